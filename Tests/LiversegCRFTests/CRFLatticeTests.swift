import XCTest
@testable import LiversegSupport
@testable import LiversegCRF

/// The lattice against brute-force Gaussian sums Σ_j exp(−|f_i − f_j|²/2θ²) v_j on small
/// random point sets, compared after normalisation (filter(v) / filter(1)), which is how
/// the CRF uses it.
final class CRFLatticeTests: XCTestCase {
    /// `count` distinct points of the integer grid {0..<side}^d, in random order.
    static func gridPoints(d: Int, side: Int, count: Int, rng: inout SeededGenerator) -> [[Double]] {
        var cells = Array(0..<Int(pow(Double(side), Double(d))))
        for i in stride(from: cells.count - 1, to: 0, by: -1) { cells.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return cells.prefix(count).map { cell in
            var c = cell
            return (0..<d).map { _ in
                let v = c % side; c /= side; return Double(v)
            }
        }
    }

    /// Mean and max of |lattice − exact| over points and channels for normalised filtering,
    /// with values uniform in [0, 1] (so errors are fractions of the value range).
    static func normalisedError(
        d: Int, theta: Double, side: Int, count: Int, channels: Int, seed: UInt64
    ) throws -> (mean: Double, max: Double, rawRatio: Double) {
        var rng = SeededGenerator(seed: seed)
        let points = gridPoints(d: d, side: side, count: count, rng: &rng)
        let values = (0..<(count * channels)).map { _ in rng.uniform() }
        let features = points.flatMap { $0.map { Float($0 / theta) } }
        let lattice = try PermutohedralLattice(features: features, count: count, dimension: d, kernelName: "test", threads: 2)
        var input = [Float](repeating: 1, count: count * (channels + 1))
        for i in 0..<count { for c in 0..<channels { input[i * (channels + 1) + c + 1] = Float(values[i * channels + c]) } }
        var output = [Float](repeating: 0, count: input.count)
        try lattice.filter(input, channels: channels + 1, into: &output, threads: 2)
        var sumError = 0.0, maxError = 0.0, rawLattice = 0.0, rawExact = 0.0
        for i in 0..<count {
            var exact = [Double](repeating: 0, count: channels + 1)
            for j in 0..<count {
                var r2 = 0.0
                for c in 0..<d { let t = (points[i][c] - points[j][c]) / theta; r2 += t * t }
                let k = exp(-r2 / 2)
                exact[0] += k
                for c in 0..<channels { exact[c + 1] += k * values[j * channels + c] }
            }
            rawLattice += Double(output[i * (channels + 1)])
            rawExact += exact[0]
            for c in 0..<channels {
                let e = abs(
                    Double(output[i * (channels + 1) + c + 1]) / Double(output[i * (channels + 1)]) - exact[c + 1] / exact[0])
                sumError += e
                maxError = max(maxError, e)
            }
        }
        return (sumError / Double(count * channels), maxError, rawLattice / rawExact)
    }

    func testMatchesBruteForceGaussianSums() throws {
        // (d, grid side, points): dense enough that every θ below has neighbours.
        let cases = [(2, 40, 1200), (3, 12, 1200), (5, 5, 1500)]
        for (d, side, count) in cases {
            for theta in [1.0, 3.0, 6.0] {
                let r = try Self.normalisedError(
                    d: d, theta: theta, side: side, count: count, channels: 2, seed: UInt64(d * 100 + Int(theta)))
                print(
                    String(
                        format: "lattice d=%d θ=%.0f: normalised error mean %.4f%% max %.3f%%, raw sum ratio %.3f",
                        d, theta, 100 * r.mean, 100 * r.max, r.rawRatio))
                // Known accuracy of the lattice (Adams, Baek and Davis 2010).
                let bound = theta <= 1 ? 0.015 : 0.005
                XCTAssertLessThan(r.mean, bound, "d=\(d) θ=\(theta)")
            }
        }
    }

    func testMultiChannelFilteringEqualsPerChannelFiltering() throws {
        var rng = SeededGenerator(seed: 7)
        let n = 500, d = 3
        let features = (0..<(n * d)).map { _ in Float(rng.uniform() * 6) }
        let values = (0..<(n * 3)).map { _ in Float(rng.uniform()) }
        let lattice = try PermutohedralLattice(features: features, count: n, dimension: d, kernelName: "test", threads: 1)
        var together = [Float](repeating: 0, count: n * 3)
        try lattice.filter(values, channels: 3, into: &together, threads: 1)
        for c in 0..<3 {
            let single = (0..<n).map { values[$0 * 3 + c] }
            var out = [Float](repeating: 0, count: n)
            try lattice.filter(single, channels: 1, into: &out, threads: 1)
            for i in 0..<n { XCTAssertEqual(out[i], together[i * 3 + c], accuracy: 1e-5 * max(1, abs(out[i]))) }
        }
    }

    func testResultDoesNotDependOnThreadCount() throws {
        var rng = SeededGenerator(seed: 11)
        let n = 4000, d = 4
        let features = (0..<(n * d)).map { _ in Float(rng.uniform() * 10) }
        let values = (0..<n).map { _ in Float(rng.uniform()) }
        var one = [Float](repeating: 0, count: n), many = [Float](repeating: 0, count: n)
        try PermutohedralLattice(features: features, count: n, dimension: d, kernelName: "t", threads: 1).filter(
            values, channels: 1, into: &one, threads: 1)
        try PermutohedralLattice(features: features, count: n, dimension: d, kernelName: "t", threads: 7).filter(
            values, channels: 1, into: &many, threads: 7)
        XCTAssertEqual(one, many)
    }

    func testTinyBandwidthIsIdentityOrAClearError() throws {
        // θ = 1e-3 grid units: every point is alone; pydensecrf's 16-bit keys crash here.
        let n = 300
        var features: [Float] = []
        for i in 0..<n { features.append(Float(i % 20) * 1000); features.append(Float(i / 20) * 1000) }
        let values = (0..<n).map { Float($0) }
        let lattice = try PermutohedralLattice(features: features, count: n, dimension: 2, kernelName: "t", threads: 1)
        var ones = [Float](repeating: 1, count: n), out = [Float](repeating: 0, count: n)
        try lattice.filter(values, channels: 1, into: &out, threads: 1)
        try lattice.filter(ones, channels: 1, into: &ones, threads: 1)
        for i in 0..<n { XCTAssertEqual(out[i] / ones[i], values[i], accuracy: 1e-3 * max(1, values[i])) }
        // Beyond what Int32 keys can hold: an error naming the kernel, not a crash.
        let huge = [Float(0), 0, 3e9, 3e9]
        XCTAssertThrowsError(
            try PermutohedralLattice(features: huge, count: 2, dimension: 2, kernelName: "spatial kernel", threads: 1)
        ) {
            XCTAssertTrue("\($0)".contains("spatial kernel"), "\($0)")
        }
        XCTAssertThrowsError(
            try PermutohedralLattice(features: [Float.nan, 0], count: 1, dimension: 2, kernelName: "k", threads: 1))
    }
}
