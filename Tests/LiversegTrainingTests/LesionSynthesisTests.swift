import XCTest
@testable import LiversegTraining
@testable import LiversegSupport
@testable import LiversegNetwork
@testable import LiversegPipeline

/// Synthetic lesions, checked in HU on a liver of one grey value, where every painted voxel
/// can be read back against the definition in `LesionSynthesis.paint`'s comment.
final class LesionSynthesisTests: XCTestCase {
    let preprocessing = Preprocessing(
        spacing: [2, 2, 2], orientation: AxisCodes("RAS")!, huWindow: (-200, 300), mean: 50, std: 125)
    let liverHU = 100.0, backgroundHU = -50.0
    let patch = GridSize(x: 16, y: 16, z: 12)

    /// An ellipsoidal liver of `liverHU` in `backgroundHU`, 2 mm voxels.
    func uniformLiver() -> TrainingVolume {
        let size = GridSize(x: 28, y: 24, z: 20)
        var intensities = [Float](), labels = [UInt8]()
        for z in 0..<size.z {
            for y in 0..<size.y {
                for x in 0..<size.x {
                    let inside = pow(Double(x - 14) / 11, 2) + pow(Double(y - 12) / 9, 2) + pow(Double(z - 10) / 8, 2) < 1
                    labels.append(inside ? 1 : 0)
                    intensities.append(preprocessing.normalise(Float(inside ? liverHU : backgroundHU)))
                }
            }
        }
        return TrainingVolume(name: "uniform", size: size, intensities: intensities, labels: labels)
    }

    func sampler(_ lesions: LesionSynthesis?, volume: TrainingVolume) throws -> PatchSampler {
        var augmentation = SpatialAugmentation.none
        augmentation.lesions = lesions
        return try PatchSampler(
            volumes: [volume], patch: patch, liverFraction: 1, padValue: preprocessing.normalise(-.infinity), seed: 7,
            spatialAugmentation: augmentation, preprocessing: preprocessing)
    }

    func hu(_ x: Float) -> Double { Double(x) * preprocessing.std + preprocessing.mean }

    /// One lesion of semi-axes 4 mm (2 voxels) and contrast −60 HU in every patch: the deepest
    /// voxel is the centre, every other voxel is 100 − 60 · clamp((1 − r) · 4/3, 0, 1) HU at
    /// ellipsoid radius r from it, nothing moves outside the liver and the labels stay.
    func testALesionIsAnEllipsoidOfTheDrawnContrastInsideTheLiver() throws {
        let volume = uniformLiver()
        let plain = try sampler(nil, volume: volume)
        let painted = try sampler(
            LesionSynthesis(probability: 1, maxCount: 1, radiusMillimetres: 4...4, contrastHU: -60 ... -60), volume: volume)
        var lesionsSeen = 0
        for index in 0..<12 {
            let (x, labels) = try plain.patch(index)
            let (y, paintedLabels) = try painted.patch(index)
            XCTAssertEqual(labels, paintedLabels)
            let before = x.storage.array.map(hu), after = y.storage.array.map(hu)
            var deepest: Int?
            for o in before.indices {
                if labels[o] == 0 {
                    XCTAssertEqual(after[o], before[o], "voxel \(o) outside the liver moved")
                } else if deepest == nil || after[o] < after[deepest!] {
                    deepest = o
                }
            }
            guard let centre = deepest, after[centre] < liverHU - 1 else { continue }
            lesionsSeen += 1
            XCTAssertEqual(after[centre], liverHU - 60, accuracy: 1e-3)
            let c = [centre % patch.x, (centre / patch.x) % patch.y, centre / (patch.x * patch.y)]
            for o in before.indices where labels[o] != 0 {
                let p = [o % patch.x, (o / patch.x) % patch.y, o / (patch.x * patch.y)]
                let r = (0..<3).map { Double(p[$0] - c[$0]) / 2 }.reduce(0) { $0 + $1 * $1 }.squareRoot()
                let expected = liverHU - 60 * min(max((1 - r) * 4 / 3, 0), 1)
                XCTAssertEqual(after[o], expected, accuracy: 1e-3, "patch \(index) voxel \(p), centre \(c)")
            }
        }
        XCTAssertGreaterThan(lesionsSeen, 8, "patches centred on liver voxels must hold lesions")
    }

    /// Drawn ranges: about half the patches get lesions, 1–3 of them, each inside the radius
    /// bound, with contrasts inside their range and of both signs.
    func testDrawsStayInTheirRanges() throws {
        let volume = uniformLiver()
        let painted = try sampler(
            LesionSynthesis(probability: 0.5, maxCount: 1, radiusMillimetres: 6...12, contrastHU: -80...40), volume: volume)
        let plain = try sampler(nil, volume: volume)
        var withLesion = 0, darker = 0, brighter = 0
        let patches = 200
        for index in 0..<patches {
            let before = try plain.patch(index).input.storage.array.map(hu)
            let after = try painted.patch(index).input.storage.array.map(hu)
            let moved = before.indices.filter { abs(after[$0] - before[$0]) > 1e-3 }
            guard !moved.isEmpty else { continue }
            withLesion += 1
            // Semi-axes ≤ 12 mm = 6 voxels: the moved voxels span at most 2 · 6 + 1 per axis.
            for (axis, stride, extent) in [(0, 1, patch.x), (1, patch.x, patch.y), (2, patch.x * patch.y, patch.z)] {
                let coordinates = moved.map { ($0 / stride) % extent }
                XCTAssertLessThanOrEqual(coordinates.max()! - coordinates.min()!, 12, "axis \(axis)")
            }
            // Semi-axes ≥ 6 mm and a 3 mm edge: the centre takes the full contrast.
            let change = moved.map { after[$0] - before[$0] }
            let extreme = change.max(by: { abs($0) < abs($1) })!
            XCTAssert((-80.001...40.001).contains(extreme), "contrast \(extreme)")
            XCTAssert(change.allSatisfy { ($0 < 0) == (extreme < 0) }, "one lesion has one sign")
            if extreme < 0 { darker += 1 } else { brighter += 1 }
        }
        // Binomial(200, 0.5): 100 ± 5 standard deviations.
        XCTAssert((65...135).contains(withLesion), "\(withLesion) of \(patches) patches got a lesion")
        XCTAssertGreaterThan(darker, brighter, "2/3 of the contrast range is darker")
        XCTAssertGreaterThan(brighter, 10)
    }

    /// The lesions have their own random stream: a patch's geometry, labels, grey-value change
    /// and the voxels outside its liver are those of the same patch without lesions, and patch
    /// i is the same whatever was drawn before it.
    func testLesionsLeaveEverythingElseAsItWas() throws {
        let volume = uniformLiver()
        let anatomical = try PatchSampler(
            volumes: [volume], patch: patch, padValue: preprocessing.normalise(-.infinity), seed: 3,
            spatialAugmentation: .anatomical, intensityAugmentation: IntensityAugmentation(shiftHU: -70...30, scale: 0.9...1.1),
            preprocessing: preprocessing)
        let lesions = try PatchSampler(
            volumes: [volume], patch: patch, padValue: preprocessing.normalise(-.infinity), seed: 3,
            spatialAugmentation: .lesions, intensityAugmentation: IntensityAugmentation(shiftHU: -70...30, scale: 0.9...1.1),
            preprocessing: preprocessing)
        var differing = 0
        for index in 0..<40 {
            let (x, labels) = try anatomical.patch(index)
            let (y, lesionLabels) = try lesions.patch(index)
            XCTAssertEqual(labels, lesionLabels)
            let (a, b) = (x.storage.array, y.storage.array)
            for o in a.indices where labels[o] == 0 { XCTAssertEqual(a[o], b[o]) }
            if a != b { differing += 1 }
        }
        XCTAssertGreaterThan(differing, 5)
        XCTAssertEqual(try lesions.patch(17).input.storage.array, try lesions.patch(17).input.storage.array)
    }

    func testInvalidRangesAreRejected() {
        let volume = uniformLiver()
        for bad in [
            LesionSynthesis(probability: 1.5, maxCount: 1, radiusMillimetres: 5...10, contrastHU: -10...10),
            LesionSynthesis(probability: 0.5, maxCount: 0, radiusMillimetres: 5...10, contrastHU: -10...10),
            LesionSynthesis(probability: 0.5, maxCount: 1, radiusMillimetres: 0...10, contrastHU: -10...10),
            LesionSynthesis(probability: 0.5, maxCount: 1, radiusMillimetres: 5...10, contrastHU: -10 ... .infinity),
        ] {
            XCTAssertThrowsError(try sampler(bad, volume: volume)) { error in
                XCTAssert("\(error)".contains("lesion synthesis"), "\(error)")
            }
        }
    }
}
