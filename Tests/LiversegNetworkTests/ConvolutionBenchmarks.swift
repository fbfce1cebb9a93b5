import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import LiversegNetwork
@testable import LiversegSupport

/// im2col vs FFT timings, run only with LIVERSEG_BENCH=1 in a release build:
///   LIVERSEG_BENCH=1 swift test -c release -Xswiftc -enable-testing --scratch-path .build-bench \
///       --filter ConvolutionBenchmarks
/// (`@testable import` needs -enable-testing in a release build; its own scratch path keeps
/// the library's release build as it is).
/// The algorithms alternate run by run (the machine may be busy); medians of `runs`, and
/// the ratio im2col / FFT of those medians. Prints the CPU's vector extensions.
final class ConvolutionBenchmarks: XCTestCase {
    let runs = Int(String(cString: getenv("LIVERSEG_BENCH_RUNS") ?? strdup("5"))) ?? 5

    override func setUpWithError() throws {
        try XCTSkipUnless(getenv("LIVERSEG_BENCH") != nil, "set LIVERSEG_BENCH=1 to run the benchmarks")
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
        let vector = flags.filter { ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl"].contains(String($0)) }
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") } ?? "?"
        print("BENCH cpu: \(model); vector extensions: \(vector.joined(separator: " ")); cores: \(availableCores)")
    }

    func random(_ n: Int, scale: Float, seed: inout UInt64) -> [Float] {
        (0..<n).map { _ in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return (Float(seed >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// Median seconds of `body` under each algorithm (forced by LIVERSEG_CONV_ALGORITHM),
    /// alternating. OpenBLAS stays single-threaded throughout, as during a network's pass:
    /// a layer run on its own would otherwise switch OpenBLAS's thread pool off and on
    /// around every call (about 0.1 s each time).
    func compare(_ what: String, _ body: () throws -> Void) rethrows {
        try withSingleThreadedBLAS { try unscopedCompare(what, body) }
    }

    private func unscopedCompare(_ what: String, _ body: () throws -> Void) rethrows {
        var times: [ConvolutionAlgorithm: [Double]] = [:]
        for run in 0...runs {
            for algorithm in ConvolutionAlgorithm.allCases {
                setenv(convolutionAlgorithmVariable, algorithm.rawValue, 1)
                let start = monotonicSeconds()
                try body()
                if run > 0 { times[algorithm, default: []].append(monotonicSeconds() - start) }  // run 0 warms up
            }
        }
        unsetenv(convolutionAlgorithmVariable)
        func median(_ t: [Double]) -> Double { let s = t.sorted(); return s[s.count / 2] }
        let im2col = median(times[.im2colGEMM]!), fft = median(times[.fft]!)
        print(
            String(
                format: "BENCH %@: im2col %.3f s, fft %.3f s, im2col/fft %.2f× (medians of %d)", what, im2col, fft, im2col / fft,
                runs))
    }

    func network(_ architecture: DSNArchitecture) throws -> DSNNetwork<Float> {
        var seed: UInt64 = 5
        var parameters: [Float] = []
        for (_, shape) in architecture.parameterShapes {
            parameters += random(
                shape.reduce(1, *), scale: (2 / Float(shape.dropFirst().reduce(1, *))).squareRoot(), seed: &seed)
        }
        return try DSNNetwork(architecture: architecture, parameters: parameters)
    }

    /// Each large layer of the paper network on its grid of a 160×160×72 input, one thread.
    func testLayers() throws {
        let net = try network(.paper)
        let full = GridSize(x: 160, y: 160, z: 72)
        var seed: UInt64 = 1
        for (i, grid) in [full, full, full.divided(by: 2), full.divided(by: 2), full.divided(by: 4)].enumerated() {
            let layer = net.convolutions[i]
            let x = Tensor<Float>(
                channels: layer.inChannels, size: grid,
                storage: try Buffer(random(layer.inChannels * grid.voxelCount, scale: 1, seed: &seed)))
            let blocking = ConvolutionCostModel.bestBlocking(
                cin: layer.inChannels, cout: layer.outChannels, kernel: layer.kernel,
                grid: grid, scalarBytes: 4)!
            let model = (
                ConvolutionCostModel.im2col(cin: layer.inChannels, cout: layer.outChannels, kernel: layer.kernel, grid: grid),
                ConvolutionCostModel.fft(blocking, cin: layer.inChannels, cout: layer.outChannels)
            )
            print(
                "BENCH \(DSNArchitecture.convNames[i]) \(layer.inChannels)→\(layer.outChannels) k\(layer.kernel) over \(grid): blocks \(blocking.block) ×\(blocking.blockCount); model im2col \(model.0) s, fft \(model.1) s"
            )
            try compare("\(DSNArchitecture.convNames[i]) forward, 1 thread") { _ = try layer.forward(x, threads: 1) }
        }
    }

    /// Each transposed convolution of the paper network on its grid of a 160×160×72 input,
    /// GEMM + col2im against the direct row kernel, 1 and 2 threads.
    func testTransposedLayers() throws {
        let net = try network(.paper)
        let full = GridSize(x: 160, y: 160, z: 72)
        let layers = [
            ("deconv9", net.mainUpsampling[0], full.divided(by: 4)), ("deconv10", net.mainUpsampling[1], full.divided(by: 2)),
            ("branch1.deconv", net.branch1Upsampling, full.divided(by: 2)),
            ("branch2.deconv1", net.branch2Upsampling[0], full.divided(by: 4)),
            ("branch2.deconv2", net.branch2Upsampling[1], full.divided(by: 2)),
        ]
        var seed: UInt64 = 4
        for (name, layer, grid) in layers {
            let x = Tensor<Float>(
                channels: layer.inChannels, size: grid,
                storage: try Buffer(random(layer.inChannels * grid.voxelCount, scale: 1, seed: &seed)))
            for threads in [1, 2] {
                var times: [TransposedConvolutionAlgorithm: [Double]] = [:]
                try withSingleThreadedBLAS {  // as in `compare`
                    for run in 0...runs {
                        for algorithm in TransposedConvolutionAlgorithm.allCases {
                            var forced = layer
                            forced.algorithm = algorithm
                            let start = monotonicSeconds()
                            _ = try forced.forward(x, threads: threads)
                            if run > 0 { times[algorithm, default: []].append(monotonicSeconds() - start) }
                        }
                    }
                }
                func median(_ t: [Double]) -> Double { let s = t.sorted(); return s[s.count / 2] }
                let (gemm, direct) = (median(times[.im2colGEMM]!), median(times[.direct]!))
                let gflop = 2 * Double(layer.macs(over: grid)) / 1e9
                print(
                    String(
                        format:
                            "BENCH %@ %d→%d over %@, %d thread(s): im2col %.4f s (%.1f GF/s), direct %.4f s (%.1f GF/s), im2col/direct %.2f×",
                        name, layer.inChannels, layer.outChannels, grid.description, threads, gemm, gflop / gemm, direct,
                        gflop / direct, gemm / direct))
            }
        }
    }

    /// The whole forward pass of the paper network on 160×160×72, 1 and 2 threads.
    func testForward() throws {
        let net = try network(.paper)
        let size = GridSize(x: 160, y: 160, z: 72)
        var seed: UInt64 = 2
        let x = Tensor<Float>(channels: 1, size: size, storage: try Buffer(random(size.voxelCount, scale: 1, seed: &seed)))
        for threads in [1, 2] {
            try compare("paper forward 160×160×72, \(threads) thread(s)") { _ = try net.forward(x, threads: threads) }
        }
    }

    /// One training step (forward and backward) on a 64×64×48 patch, small and paper architectures.
    func testTrainingStep() throws {
        let size = GridSize(x: 64, y: 64, z: 48)
        var seed: UInt64 = 3
        let x = Tensor<Float>(channels: 1, size: size, storage: try Buffer(random(size.voxelCount, scale: 1, seed: &seed)))
        let labels: [UInt8] = (0..<size.voxelCount).map { UInt8(($0 / 7) % 2) }
        var small = DSNArchitecture.paper
        small.convChannels = [4, 4, 8, 16, 16, 16]
        small.mainDeconvChannels = 8
        small.branch2DeconvChannels = 8
        for (name, architecture) in [("small", small), ("paper", DSNArchitecture.paper)] {
            let net = try network(architecture)
            for threads in [1, 2] {
                try compare("\(name) training step 64×64×48, \(threads) thread(s)") {
                    _ = try net.lossAndGradients(x, labels: labels, eta: (0.3, 0.3), threads: threads)
                }
            }
        }
    }
}
