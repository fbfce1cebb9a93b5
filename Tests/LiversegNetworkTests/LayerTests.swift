import XCTest
@testable import LiversegNetwork
@testable import LiversegSupport

/// Each layer against a direct float64 implementation written here from the definitions.
final class LayerTests: XCTestCase {
    var rng = SystemRandomNumberGenerator()

    func randomArray(_ n: Int, seed: inout UInt64) -> [Float] {
        (0..<n).map { _ in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: seed >> 11) % 2_000_001) / 1_000_000 - 1
        }
    }

    func tensor(_ values: [Float], channels: Int, size: GridSize) throws -> Tensor<Float> {
        Tensor<Float>(channels: channels, size: size, storage: try FloatBuffer(values))
    }

    /// Largest |a − b| relative to the largest |b|.
    func relativeError(_ a: [Float], _ b: [Double]) -> Double {
        let scale = max(b.map { abs($0) }.max() ?? 0, 1e-30)
        return zip(a, b).map { abs(Double($0) - $1) }.max()! / scale
    }

    func referenceConv(
        _ x: [Float], cin: Int, size s: GridSize, w: [Float], b: [Float], cout: Int, k: GridSize, relu: Bool
    ) -> [Double] {
        var out = [Double](repeating: 0, count: cout * s.voxelCount)
        for co in 0..<cout {
            for z in 0..<s.z {
                for y in 0..<s.y {
                    for xx in 0..<s.x {
                        var acc = Double(b[co])
                        for ci in 0..<cin {
                            for dz in 0..<k.z {
                                for dy in 0..<k.y {
                                    for dx in 0..<k.x {
                                        let (iz, iy, ix) = (z + dz - k.z / 2, y + dy - k.y / 2, xx + dx - k.x / 2)
                                        guard iz >= 0, iz < s.z, iy >= 0, iy < s.y, ix >= 0, ix < s.x else { continue }
                                        let wv = Double(w[(((co * cin + ci) * k.z + dz) * k.y + dy) * k.x + dx])
                                        acc += wv * Double(x[((ci * s.z + iz) * s.y + iy) * s.x + ix])
                                    }
                                }
                            }
                        }
                        out[((co * s.z + z) * s.y + y) * s.x + xx] = relu ? max(acc, 0) : acc
                    }
                }
            }
        }
        return out
    }

    func testConvolutionMatchesDirectSum() throws {
        var seed: UInt64 = 42
        let cases: [(Int, Int, GridSize, GridSize)] = [
            (1, 3, GridSize(x: 9, y: 7, z: 5), GridSize(x: 9, y: 9, z: 7)),
            (3, 4, GridSize(x: 13, y: 6, z: 4), GridSize(x: 5, y: 3, z: 3)),
            (4, 2, GridSize(x: 5, y: 5, z: 3), GridSize(x: 1, y: 1, z: 1)),
            (2, 5, GridSize(x: 40, y: 3, z: 2), GridSize(x: 3, y: 3, z: 1)),
        ]
        for (cin, cout, size, k) in cases {
            for relu in [false, true] {
                let x = randomArray(cin * size.voxelCount, seed: &seed)
                let w = randomArray(cout * cin * k.voxelCount, seed: &seed)
                let b = randomArray(cout, seed: &seed)
                let layer = Convolution3D(inChannels: cin, outChannels: cout, kernel: k, weight: w, bias: b, relu: relu)
                for threads in [1, 3] {
                    let y = try layer.forward(try tensor(x, channels: cin, size: size), threads: threads)
                    let ref = referenceConv(x, cin: cin, size: size, w: w, b: b, cout: cout, k: k, relu: relu)
                    XCTAssertLessThan(relativeError(y.storage.array, ref), 1e-5, "conv \(cin)→\(cout) \(size) k\(k)")
                }
            }
        }
    }

    /// Blocks smaller than the grid, so that overlap-save runs over several blocks on every axis.
    func smallBlocking(_ k: GridSize, _ size: GridSize) -> FFTBlocking {
        func pow2(_ n: Int) -> Int { var p = 1; while p < n { p *= 2 }; return p }
        return FFTBlocking(block: GridSize(x: k.x + 3, y: pow2(k.y + 1), z: pow2(k.z + 1)), kernel: k, grid: size)
    }

    /// The FFT algorithm, with the cost model's blocks and with small blocks, against the
    /// float64 direct sum; the same bits for 1 and 3 threads. Forward, and the input and
    /// weight gradients against the float64 im2col backward (checked by GradientTests).
    func testFFTConvolutionMatchesDirectSum() throws {
        var seed: UInt64 = 11
        let cases: [(Int, Int, GridSize, GridSize)] = [
            (1, 3, GridSize(x: 7, y: 5, z: 3), GridSize(x: 9, y: 9, z: 7)),  // grid smaller than the kernel
            (2, 3, GridSize(x: 13, y: 11, z: 9), GridSize(x: 9, y: 9, z: 7)),
            (3, 4, GridSize(x: 15, y: 9, z: 11), GridSize(x: 7, y: 7, z: 5)),
            (4, 2, GridSize(x: 6, y: 7, z: 5), GridSize(x: 5, y: 5, z: 3)),
            (2, 2, GridSize(x: 9, y: 4, z: 6), GridSize(x: 3, y: 1, z: 5)),
        ]
        for (cin, cout, size, k) in cases {
            let x = randomArray(cin * size.voxelCount, seed: &seed)
            let w = randomArray(cout * cin * k.voxelCount, seed: &seed)
            let b = randomArray(cout, seed: &seed)
            let r = randomArray(cout * size.voxelCount, seed: &seed)
            let input = try tensor(x, channels: cin, size: size)
            for relu in [false, true] {
                var layer = Convolution3D(inChannels: cin, outChannels: cout, kernel: k, weight: w, bias: b, relu: relu)
                layer.algorithm = .fft
                let ref = referenceConv(x, cin: cin, size: size, w: w, b: b, cout: cout, k: k, relu: relu)
                let y1 = try layer.forward(input, threads: 1)
                let y3 = try layer.forward(input, threads: 3)
                XCTAssertEqual(layer.chosenAlgorithm(over: size), .fft)
                XCTAssertLessThan(relativeError(y1.storage.array, ref), 1e-5, "fft \(cin)→\(cout) \(size) k\(k)")
                XCTAssertEqual(y1.storage.array, y3.storage.array)
                let blocked = try Tensor<Float>(channels: cout, size: size, zeroed: false)
                try layer.overlapSave(input, into: blocked, adjoint: false, blocking: smallBlocking(k, size), threads: 2)
                XCTAssertLessThan(relativeError(blocked.storage.array, ref), 1e-5, "blocked fft \(cin)→\(cout) \(size) k\(k)")
            }
            // Gradients: float64 im2col as the reference.
            var layer = Convolution3D(inChannels: cin, outChannels: cout, kernel: k, weight: w, bias: b, relu: false)
            layer.algorithm = .fft
            var exact = Convolution3D(
                inChannels: cin, outChannels: cout, kernel: k, weight: w.map(Double.init),
                bias: b.map(Double.init), relu: false)
            exact.algorithm = .im2colGEMM
            let input64 = Tensor<Double>(channels: cin, size: size, storage: try Buffer(x.map(Double.init)))
            let dY64 = Tensor<Double>(channels: cout, size: size, storage: try Buffer(r.map(Double.init)))
            let g64 = try exact.backward(
                input: input64, output: try exact.forward(input64, threads: 1), outputGradient: dY64, threads: 1)
            let dY = try tensor(r, channels: cout, size: size)
            let y = try layer.forward(input, threads: 1)
            let g1 = try layer.backward(input: input, output: y, outputGradient: dY, threads: 1)
            let g3 = try layer.backward(input: input, output: y, outputGradient: dY, threads: 3)
            XCTAssertLessThan(relativeError(g1.input.storage.array, g64.input.storage.array), 1e-5, "fft dX k\(k)")
            XCTAssertLessThan(relativeError(g1.weight, g64.weight), 1e-5, "fft dW k\(k)")
            XCTAssertEqual(g1.input.storage.array, g3.input.storage.array)
            XCTAssertEqual(g1.weight, g3.weight)
            let blocking = smallBlocking(k, size)
            let dX = try Tensor<Float>(channels: cin, size: size, zeroed: false)
            try layer.overlapSave(dY, into: dX, adjoint: true, blocking: blocking, threads: 2)
            XCTAssertLessThan(relativeError(dX.storage.array, g64.input.storage.array), 1e-5, "blocked fft dX k\(k)")
            let dW = try layer.fftWeightGradient(input, dY, blocking: blocking, threads: 2)
            XCTAssertLessThan(relativeError(dW, g64.weight), 1e-5, "blocked fft dW k\(k)")
            // Blocks added one per pass, all but one in the first pass (the second holds the
            // last block alone) and all in one: the same bits.
            XCTAssertGreaterThan(blocking.blockCount, 2)
            for perPass in [1, blocking.blockCount - 1, blocking.blockCount] {
                let grouped = try layer.fftWeightGradient(input, dY, blocking: blocking, threads: 3, blocksPerPass: perPass)
                XCTAssertEqual(grouped, dW, "dW with \(perPass) of \(blocking.blockCount) blocks per pass")
            }
        }
    }

    /// Blocks share a pass over the weight gradient's accumulators when those outweigh one
    /// block's spectra, as many as the spectra budget holds.
    func testWeightGradientGroupsBlocksWhenTheAccumulatorsOutweighTheirSpectra() {
        let limit = FFTBlocking.gradientSpectraBytesLimit
        func perPass(_ cin: Int, _ cout: Int, blocks: Int, bytes: Int) -> Int {
            FFTBlocking.blocksPerGradientPass(inChannels: cin, outChannels: cout, blockCount: blocks, blockSpectrumBytes: bytes)
        }
        XCTAssertEqual(perPass(1, 8, blocks: 12, bytes: 1000), 1)  // 8 accumulators, 9 spectra per block
        XCTAssertEqual(perPass(2, 2, blocks: 12, bytes: 1000), 1)  // 4 and 4
        XCTAssertEqual(perPass(2, 3, blocks: 12, bytes: 1000), 12)  // 6 and 5
        XCTAssertEqual(perPass(8, 8, blocks: 24, bytes: 106_496), 24)  // conv2 of a training patch
        XCTAssertEqual(perPass(32, 32, blocks: 100, bytes: limit / 64 / 10), 10)  // the budget holds 10 blocks
        XCTAssertEqual(perPass(32, 32, blocks: 100, bytes: limit), 1)  // not even one: still one
    }

    /// The transposed convolution's gradients are the same bits on 1, 2 and 3 threads, as
    /// every layer's are (training with --threads 2 reproduces --threads 1). Sizes of the
    /// paper network's up-sampling layers on a training patch: GEMMs of thousands of
    /// columns, where splitting dX's columns across threads changed its bits.
    func testTransposedConvolutionBackwardDoesNotDependOnThreads() throws {
        var seed: UInt64 = 13
        for (cin, cout, size) in [(32, 16, GridSize(x: 16, y: 16, z: 12)), (16, 16, GridSize(x: 32, y: 32, z: 24))] {
            let layer = TransposedConvolution3D<Float>(
                inChannels: cin, outChannels: cout, weight: randomArray(cin * cout * 27, seed: &seed),
                bias: randomArray(cout, seed: &seed), relu: true)
            let input = try tensor(randomArray(cin * size.voxelCount, seed: &seed), channels: cin, size: size)
            let output = try layer.forward(input, threads: 1)
            let dY = try tensor(
                randomArray(cout * output.size.voxelCount, seed: &seed), channels: cout, size: output.size)
            let one = try layer.backward(input: input, output: output, outputGradient: dY, threads: 1)
            for threads in [2, 3] {
                let many = try layer.backward(input: input, output: output, outputGradient: dY, threads: threads)
                XCTAssertTrue(
                    many.input.storage.array == one.input.storage.array, "dX, \(cin)→\(cout) \(size), \(threads) threads")
                XCTAssertTrue(many.weight == one.weight, "dW, \(threads) threads")
                XCTAssertTrue(many.bias == one.bias, "db, \(threads) threads")
            }
        }
    }

    func testTransposedConvolutionMatchesScatterDefinition() throws {
        var seed: UInt64 = 7
        // x = 37 and 70: the direct kernel's 32-wide chunks, a full one followed by a partial one.
        for (cin, cout, size, relu) in [
            (3, 2, GridSize(x: 5, y: 4, z: 3), false), (1, 4, GridSize(x: 2, y: 7, z: 6), false),
            (2, 3, GridSize(x: 37, y: 3, z: 2), true), (4, 1, GridSize(x: 70, y: 2, z: 3), false),
        ] {
            let x = randomArray(cin * size.voxelCount, seed: &seed)
            let w = randomArray(cin * cout * 27, seed: &seed)
            let b = randomArray(cout, seed: &seed)
            var layer = TransposedConvolution3D(inChannels: cin, outChannels: cout, weight: w, bias: b, relu: relu)
            let o = size.multiplied(by: 2)
            var ref = [Double](repeating: 0, count: cout * o.voxelCount)
            for co in 0..<cout { for i in 0..<o.voxelCount { ref[co * o.voxelCount + i] = Double(b[co]) } }
            // out[2i − 1 + k] += in[i] · w[ci, co, k]  (PyTorch ConvTranspose3d, padding 1, output_padding 1)
            for ci in 0..<cin {
                for co in 0..<cout {
                    for iz in 0..<size.z {
                        for iy in 0..<size.y {
                            for ix in 0..<size.x {
                                for kz in 0..<3 {
                                    for ky in 0..<3 {
                                        for kx in 0..<3 {
                                            let (oz, oy, ox) = (2 * iz - 1 + kz, 2 * iy - 1 + ky, 2 * ix - 1 + kx)
                                            guard oz >= 0, oz < o.z, oy >= 0, oy < o.y, ox >= 0, ox < o.x else { continue }
                                            ref[((co * o.z + oz) * o.y + oy) * o.x + ox] +=
                                                Double(w[((ci * cout + co) * 3 + kz) * 9 + ky * 3 + kx])
                                                * Double(x[((ci * size.z + iz) * size.y + iy) * size.x + ix])
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if relu { ref = ref.map { max($0, 0) } }
            for algorithm in TransposedConvolutionAlgorithm.allCases {
                layer.algorithm = algorithm
                for threads in [1, 3] {
                    let y = try layer.forward(try tensor(x, channels: cin, size: size), threads: threads)
                    XCTAssertLessThan(relativeError(y.storage.array, ref), 1e-5, "\(algorithm), \(size), \(threads) threads")
                }
            }
        }
    }

    func testMaxPoolAndSoftmax() throws {
        var seed: UInt64 = 3
        let size = GridSize(x: 6, y: 4, z: 2)
        let x = randomArray(2 * size.voxelCount, seed: &seed)
        let y = try MaxPool2.forward(try tensor(x, channels: 2, size: size), threads: 2).storage.array
        let o = size.divided(by: 2)
        for c in 0..<2 {
            for z in 0..<o.z {
                for yy in 0..<o.y {
                    for xx in 0..<o.x {
                        var m = -Float.infinity
                        for d in 0..<8 {
                            m = max(
                                m, x[((c * size.z + 2 * z + d / 4) * size.y + 2 * yy + (d / 2) % 2) * size.x + 2 * xx + d % 2])
                        }
                        XCTAssertEqual(y[((c * o.z + z) * o.y + yy) * o.x + xx], m)
                    }
                }
            }
        }

        let scores = try tensor(x.map { $0 * 30 }, channels: 2, size: size)
        var p = [Float](repeating: 0, count: size.voxelCount)
        Softmax.classProbability(scores, targetClass: 1, into: &p, threads: 2)
        let n = size.voxelCount
        let ref = (0..<n).map { v in 1 / (1 + exp(Double(x[v] * 30) - Double(x[n + v] * 30))) }
        XCTAssertLessThan(relativeError(p, ref), 1e-6)
    }
}
