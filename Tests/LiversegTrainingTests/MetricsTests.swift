import XCTest
@testable import LiversegTraining
@testable import LiversegSupport
import LiversegTestSupport

func evaluate(
    _ a: [UInt8], _ b: [UInt8], _ size: GridSize, _ spacing: [Double],
    _ connectivity: BorderConnectivity = .edges, threads: Int = 1
) throws -> SegmentationMetrics {
    try evaluateSegmentation(a, b, size: size, spacing: spacing, connectivity: connectivity, threads: threads)
}

final class MetricsTests: XCTestCase {
    func testDistanceTransformMatchesBruteForce() throws {
        var rng = SeededGenerator(seed: 42)
        for trial in 0..<20 {
            let size = GridSize(
                x: Int.random(in: 1...9, using: &rng), y: Int.random(in: 1...8, using: &rng),
                z: Int.random(in: 1...7, using: &rng))
            let spacing = (0..<3).map { _ in Double.random(in: 0.3...3, using: &rng) }
            let density = trial % 4 == 0 ? 0.02 : 0.15
            let features = (0..<size.voxelCount).map { _ in Double.random(in: 0..<1, using: &rng) < density }
            let edt = try features.withUnsafeBufferPointer {
                try squaredDistanceTransform(isFeature: $0, size: size, spacing: spacing, threads: 1 + trial % 3)
            }
            let points = features.indices.filter { features[$0] }
            for v in 0..<size.voxelCount {
                let p = gridPoint(v, size, spacing)
                let brute = points.map { squaredDistance(p, gridPoint($0, size, spacing)) }.min() ?? .infinity
                if brute.isInfinite {
                    XCTAssertTrue(edt[v].isInfinite)
                } else {
                    XCTAssertEqual(edt[v], brute, accuracy: 1e-9 * max(1, brute))
                }
            }
        }
    }

    func testBorderConnectivity() throws {
        let size = GridSize(x: 5, y: 5, z: 5)
        var m = boxMask(size, [1, 1, 1], [4, 4, 4]).map { $0 != 0 }
        // A 3×3×3 cube: only the centre is interior, for every connectivity.
        for c in BorderConnectivity.allCases {
            let border = m.withUnsafeBufferPointer { borderVoxels(of: $0, size: size, connectivity: c) }
            XCTAssertEqual(border.filter { $0 }.count, 26, "\(c)")
        }
        // Remove a corner of the cube's neighbourhood: the centre touches it only diagonally.
        m = boxMask(size, [0, 0, 0], [5, 5, 5]).map { $0 != 0 }
        m[(1 * 5 + 1) * 5 + 1] = false
        let centre = (2 * 5 + 2) * 5 + 2
        let faces = m.withUnsafeBufferPointer { borderVoxels(of: $0, size: size, connectivity: .faces) }
        let vertices = m.withUnsafeBufferPointer { borderVoxels(of: $0, size: size, connectivity: .vertices) }
        XCTAssertFalse(faces[centre])
        XCTAssertTrue(vertices[centre])
    }

    func testShiftedBoxesHaveKnownAnswers() throws {
        let size = GridSize(x: 12, y: 10, z: 9)
        let spacing = [0.7, 1.3, 2.5]
        let a = boxMask(size, [2, 2, 2], [8, 7, 6]), b = boxMask(size, [2, 2, 3], [8, 7, 7])
        let m = try evaluate(a, b, size, spacing)
        // 6×5×4 boxes overlapping in 6×5×3.
        XCTAssertEqual(m.dice, 0.75, accuracy: 1e-15)
        XCTAssertEqual(try diceCoefficient(a, b), m.dice)
        XCTAssertEqual(m.voe, 100 * (1 - 90.0 / 150), accuracy: 1e-12)
        XCTAssertEqual(m.vd, 0)
        XCTAssertEqual(m.maxD, 2.5, accuracy: 1e-12)
        XCTAssertEqual(try evaluate(a, a, size, spacing).maxD, 0)
        // Brute force over the border voxels the same definition gives.
        let bruteForce = try bruteForceSurfaceDistances(a, b, size, spacing)
        XCTAssertEqual(m.avgD, bruteForce.reduce(0, +) / Double(bruteForce.count), accuracy: 1e-12)
        XCTAssertEqual(m.rmsD, (bruteForce.map { $0 * $0 }.reduce(0, +) / Double(bruteForce.count)).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(m.hd95, percentile(sorted: bruteForce.sorted(), 0.95), accuracy: 1e-12)
    }

    func testRandomBlobsMatchBruteForceForEveryConnectivityAndThreadCount() throws {
        var rng = SeededGenerator(seed: 7)
        let size = GridSize(x: 14, y: 11, z: 9), spacing = [0.8, 0.6, 1.7]
        func blob() -> [UInt8] {
            let c = (0..<3).map { _ in Double.random(in: 4...7, using: &rng) }
            let r = Double.random(in: 2.5...4.5, using: &rng)
            return (0..<size.voxelCount).map { i in squaredDistance(gridPoint(i, size, [1, 1, 1]), c) <= r * r ? 1 : 0 }
        }
        for trial in 0..<6 {
            let (a, b) = (blob(), blob())
            for c in BorderConnectivity.allCases {
                let m = try evaluate(a, b, size, spacing, c, threads: 1 + trial % 2)
                let brute = try bruteForceSurfaceDistances(a, b, size, spacing, c)
                XCTAssertEqual(m.avgD, brute.reduce(0, +) / Double(brute.count), accuracy: 1e-12)
                XCTAssertEqual(m.maxD, brute.max() ?? 0, accuracy: 1e-12)
                XCTAssertEqual(m, try evaluate(a, b, size, spacing, c, threads: 3))
                XCTAssertEqual(try diceCoefficient(a, b), m.dice)
            }
        }
    }

    func testEmptyMasksGiveDocumentedValues() throws {
        let size = GridSize(x: 4, y: 4, z: 4)
        let empty = [UInt8](repeating: 0, count: 64), box = boxMask(size, [1, 1, 1], [3, 3, 3])
        let none = try evaluate(empty, empty, size, [1, 1, 1])
        XCTAssertEqual([none.dice, none.voe, none.vd, none.avgD, none.rmsD, none.maxD, none.hd95], [1, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(none.scores.total, 100)
        XCTAssertEqual(try diceCoefficient(empty, empty), 1)
        XCTAssertEqual(try diceCoefficient(empty, box), 0)
        XCTAssertEqual(try diceCoefficient(box, empty), 0)
        let missed = try evaluate(empty, box, size, [1, 1, 1])
        XCTAssertEqual([missed.dice, missed.voe, missed.vd], [0, 100, -100])
        XCTAssertEqual(missed.avgD, .infinity)
        XCTAssertEqual(missed.scores.avgD, 0)
        XCTAssertEqual(missed.scores.vd, 0)
        let spurious = try evaluate(box, empty, size, [1, 1, 1])
        XCTAssertEqual(spurious.vd, .infinity)
        XCTAssertEqual(spurious.scores.total, 0)
    }

    func testSLiver07ScoresMatchPublishedValues() {
        let r = SLiver07Scores.referenceValues
        // The second rater scores 75 by construction; Kainmüller et al. (SLiver07 test set):
        // VOE 6.09 % → 76, AvgD 0.95 mm → 76.
        XCTAssertEqual(SLiver07Scores.score(r.voe, reference: r.voe), 75)
        XCTAssertEqual(SLiver07Scores.score(6.09, reference: r.voe).rounded(), 76)
        XCTAssertEqual(SLiver07Scores.score(0.95, reference: r.avgD).rounded(), 76)
        XCTAssertEqual(SLiver07Scores.score(-4.7, reference: r.vd), 75)
        XCTAssertEqual(SLiver07Scores.score(100, reference: r.maxD), 0)
    }

    func testRejectsBadArguments() {
        let size = GridSize(x: 2, y: 2, z: 2)
        XCTAssertThrowsError(try evaluate([0], [0], size, [1, 1, 1]))
        XCTAssertThrowsError(try diceCoefficient([0, 1], [1]))
        XCTAssertThrowsError(try evaluate([UInt8](repeating: 0, count: 8), [UInt8](repeating: 0, count: 8), size, [1, 0, 1]))
    }
}

/// Pooled symmetric surface distances by brute force over all border-voxel pairs.
func bruteForceSurfaceDistances(
    _ a: [UInt8], _ b: [UInt8], _ size: GridSize, _ spacing: [Double],
    _ connectivity: BorderConnectivity = .edges
) throws -> [Double] {
    func border(_ m: [UInt8]) -> [Int] {
        let flags = m.map { $0 != 0 }
        let border = flags.withUnsafeBufferPointer { borderVoxels(of: $0, size: size, connectivity: connectivity) }
        return border.indices.filter { border[$0] }
    }
    func directed(_ from: [Int], _ to: [Int]) -> [Double] {
        from.map { p in
            (to.map { squaredDistance(gridPoint(p, size, spacing), gridPoint($0, size, spacing)) }.min() ?? .infinity)
                .squareRoot()
        }
    }
    let (ba, bb) = (border(a), border(b))
    return directed(ba, bb) + directed(bb, ba)
}

/// The position in mm of flat voxel index `i`.
func gridPoint(_ i: Int, _ size: GridSize, _ spacing: [Double]) -> [Double] {
    let (x, y, z) = (i % size.x, i / size.x % size.y, i / (size.x * size.y))
    return [Double(x) * spacing[0], Double(y) * spacing[1], Double(z) * spacing[2]]
}

/// |p − q|².
func squaredDistance(_ p: [Double], _ q: [Double]) -> Double {
    var sum = 0.0
    for (a, b) in zip(p, q) { sum += (a - b) * (a - b) }
    return sum
}
