import XCTest
@testable import LiversegSupport
@testable import LiversegVolume

final class ResamplingTests: XCTestCase {
    /// The trilinear resampler keeps x-interpolated source rows across output rows and
    /// planes; every value must still be the one-voxel-at-a-time definition, bit for bit:
    /// lerp_z(lerp_y(lerp_x)) with each lerp a + w·(b − a). Up- and down-sampling, flipped
    /// axes, an output axis read from another source axis, Int16 and Float sources, 1 and 3
    /// threads.
    func testResamplingEqualsTheOneVoxelDefinitionBitForBit() throws {
        let source = (sx: 7, sy: 5, sz: 4)
        let strides = [1, source.sx, source.sx * source.sy]
        let counts = [source.sx, source.sy, source.sz]
        var seed: UInt64 = 3
        let values: [Float] = (0..<(source.sx * source.sy * source.sz)).map { _ in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(seed >> 53) - 512)  // whole numbers: exact as Int16 too
        }
        let int16 = values.map { Int16($0) }
        // (output extents, source axis of each output axis, flips of the source coordinate)
        let cases: [([Int], [Int], [Bool])] = [
            ([17, 12, 9], [0, 1, 2], [false, false, false]),  // up-sampling
            ([3, 2, 2], [0, 1, 2], [false, false, false]),  // down-sampling
            ([11, 3, 10], [2, 0, 1], [true, false, true]),  // permuted and flipped, mixed
        ]
        for (extents, axes, flips) in cases {
            let samples = (0..<3).map { a in
                AxisSamples(
                    outputCount: extents[a], sourceCount: counts[axes[a]], sourceStride: strides[axes[a]],
                    flipOutput: a == 1, flipSource: flips[a])
            }
            let (x, y, z) = (samples[0], samples[1], samples[2])
            var expected = [Float](repeating: 0, count: extents.reduce(1, *))
            for k in 0..<extents[2] {
                for j in 0..<extents[1] {
                    for i in 0..<extents[0] {
                        func lerpX(_ o: Int) -> Float {
                            let a = values[o + x.lower[i]], b = values[o + x.upper[i]]
                            return a + x.weight[i] * (b - a)
                        }
                        let c00 = lerpX(z.lower[k] + y.lower[j]), c01 = lerpX(z.lower[k] + y.upper[j])
                        let c10 = lerpX(z.upper[k] + y.lower[j]), c11 = lerpX(z.upper[k] + y.upper[j])
                        let c0 = c00 + y.weight[j] * (c01 - c00), c1 = c10 + y.weight[j] * (c11 - c10)
                        expected[(k * extents[1] + j) * extents[0] + i] = 2 * (c0 + z.weight[k] * (c1 - c0))
                    }
                }
            }
            for threads in [1, 3] {
                var fromFloat = [Float](repeating: .nan, count: expected.count)
                var fromInt16 = fromFloat
                try values.withUnsafeBufferPointer { v in
                    try fromFloat.withUnsafeMutableBufferPointer { out in
                        try resampleTrilinear(
                            .float32(v.baseAddress!), x: x, y: y, z: z, into: out.baseAddress!, threads: threads,
                            progress: { _ in }, transform: { 2 * $0 })
                    }
                }
                try int16.withUnsafeBufferPointer { v in
                    try fromInt16.withUnsafeMutableBufferPointer { out in
                        try resampleTrilinear(
                            .int16(v.baseAddress!), x: x, y: y, z: z, into: out.baseAddress!, threads: threads,
                            progress: { _ in }, transform: { 2 * $0 })
                    }
                }
                for (name, got) in [("Float", fromFloat), ("Int16", fromInt16)] {
                    let differing = (0..<expected.count).filter { got[$0].bitPattern != expected[$0].bitPattern }
                    XCTAssertEqual(
                        differing.count, 0,
                        "\(name) source, \(extents) from axes \(axes), \(threads) threads: first at \(differing.first ?? -1)")
                }
            }
        }
    }
}
