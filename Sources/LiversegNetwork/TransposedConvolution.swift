#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport

/// How a transposed convolution layer computes its forward pass. Both compute the same
/// function up to rounding; the backward pass is the GEMM lowering's either way.
public enum TransposedConvolutionAlgorithm: String, Sendable, CaseIterable {
    /// A GEMM to 27 values per output channel and input voxel, scatter-added (col2im).
    case im2colGEMM
    /// Each output row summed once from the at most 4·Cin input rows that feed it.
    case direct
}

/// The variable that overrides every transposed convolution's choice: "im2colGEMM" or "direct".
public let transposedConvolutionAlgorithmVariable = "LIVERSEG_DECONV_ALGORITHM"

/// A 3×3×3 transposed convolution with stride 2 that doubles every extent
/// (PyTorch ConvTranspose3d(kernel 3, stride 2, padding 1, output_padding 1)), bias, and
/// optional fused ReLU: the paper's "deconvolution" layers.
///
/// Shapes: input [Cin, Z, Y, X] → output [Cout, 2Z, 2Y, 2X];
/// weight [Cin, Cout, 3, 3, 3] (PyTorch ConvTranspose3d layout), bias [Cout].
/// Input voxel i contributes to output 2i − 1 + k for tap k ∈ {0, 1, 2} on each axis.
public struct TransposedConvolution3D<Scalar: NetworkScalar>: Sendable {
    /// Input channels.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// Weights, [Cin][Cout][3][3][3].
    public let weight: [Scalar]
    /// One bias per output channel.
    public let bias: [Scalar]
    /// Whether a ReLU follows.
    public let relu: Bool
    /// The forward pass's algorithm; nil: `chosenAlgorithm`.
    public var algorithm: TransposedConvolutionAlgorithm?

    /// Creates a layer; sizes must agree.
    public init(inChannels: Int, outChannels: Int, weight: [Scalar], bias: [Scalar], relu: Bool) {
        precondition(weight.count == inChannels * outChannels * 27 && bias.count == outChannels)
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.weight = weight
        self.bias = bias
        self.relu = relu
    }

    /// Multiply-accumulates of one forward pass from an input of `size`.
    public func macs(over size: GridSize) -> Int { inChannels * outChannels * 27 * size.voxelCount }

    /// The forward pass's algorithm: `algorithm` when set, else the one named by
    /// LIVERSEG_DECONV_ALGORITHM, else direct (2–16× faster on every layer of the paper
    /// network run on its own, 5 % on the whole forward pass; docs/benchmarks.md, session 9).
    public var chosenAlgorithm: TransposedConvolutionAlgorithm {
        algorithm ?? getenv(transposedConvolutionAlgorithmVariable).flatMap {
            TransposedConvolutionAlgorithm(rawValue: String(cString: $0))
        } ?? .direct
    }

    /// Input z planes per GEMM: bounds the column buffer to about `planesPerChunk` ×
    /// (27 · Cout) × (X · Y) floats.
    private static func planesPerChunk(_ size: GridSize, outChannels: Int) -> Int {
        max(1, min(size.z, (4 << 20) / max(1, 27 * outChannels * size.x * size.y)))
    }

    /// Forward pass by `chosenAlgorithm`. `progress` receives the fraction of the layer
    /// done between rounds of work, on the calling thread; it may throw to stop.
    public func forward(
        _ input: Tensor<Scalar>, threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws -> Tensor<Scalar> {
        precondition(input.channels == inChannels)
        let direct = chosenAlgorithm == .direct
        // The GEMM lowering scatter-adds into its output; the direct one writes every value.
        let output = try Tensor<Scalar>(channels: outChannels, size: input.size.multiplied(by: 2), zeroed: !direct)
        if direct {
            try directForward(input, into: output, threads: threads, progress: progress)
        } else {
            try withSingleThreadedBLAS { try gemmForward(input, into: output, threads: threads, progress: progress) }
        }
        return output
    }

    /// The direct forward pass. Along each axis output 2m takes tap 1 of input m, and output
    /// 2m + 1 taps 2 of input m and 0 of input m + 1 (`forEachSource`), so an output row is
    /// a sum over ≤ 4·Cin input rows with three x taps each, computed once per output row
    /// (CKernels' deconv_row) in a fixed order: results do not depend on threads. The taps
    /// of a row depend only on its output channel, its z and its y's parity (and whether
    /// y + 1 leaves the grid), so each (channel, z) gathers them once for all its rows.
    private func directForward(
        _ input: Tensor<Scalar>, into output: Tensor<Scalar>, threads: Int, progress: (Double) throws -> Void
    ) throws {
        let inSize = input.size, outSize = output.size
        let tasks = outChannels * outSize.z, workers = max(1, min(threads, tasks)), most = 4 * inChannels
        let rowScratch = try Buffer<UnsafePointer<Scalar>>(count: workers * most, zeroed: false)
        // Per worker, the taps of even y rows, odd y rows, and the odd row whose y + 1 is outside.
        let tapScratch = try Buffer<Scalar>(count: workers * 3 * most * 3, zeroed: false)
        try weight.withUnsafeBufferPointer { w in
            nonisolated(unsafe) let w = w.baseAddress!, src = UnsafePointer(input.storage.pointer)
            nonisolated(unsafe) let dst = output.storage.pointer
            try parallelRounds(tasks, threads: workers, checkpoint: progress) { worker, range in
                let rows = rowScratch.pointer + worker * most
                let taps = tapScratch.pointer + worker * 3 * most * 3
                for task in range {
                    let (co, oz) = (task / outSize.z, task % outSize.z)
                    // Taps in the order the rows are gathered below: ci, then z source, then y source.
                    for (kind, oy) in [0, 1, outSize.y - 1].enumerated() {
                        var count = 0
                        for ci in 0..<inChannels {
                            Self.forEachSource(of: oz, count: inSize.z) { kz, _ in
                                Self.forEachSource(of: oy, count: inSize.y) { ky, _ in
                                    (taps + (kind * most + count) * 3).update(
                                        from: w + (((ci * outChannels + co) * 3 + kz) * 3 + ky) * 3, count: 3)
                                    count += 1
                                }
                            }
                        }
                    }
                    for oy in 0..<outSize.y {
                        var count = 0
                        for ci in 0..<inChannels {
                            Self.forEachSource(of: oz, count: inSize.z) { _, iz in
                                Self.forEachSource(of: oy, count: inSize.y) { _, iy in
                                    rows[count] = src + ((ci * inSize.z + iz) * inSize.y + iy) * inSize.x
                                    count += 1
                                }
                            }
                        }
                        let kind = oy % 2 == 0 ? 0 : (oy == outSize.y - 1 ? 2 : 1)
                        Scalar.deconvolutionRow(
                            dst + ((co * outSize.z + oz) * outSize.y + oy) * outSize.x, rows: rows, taps: taps + kind * most * 3,
                            count: count, x: inSize.x, bias: bias[co], relu: relu)
                    }
                }
            }
        }
    }

    /// Calls body(k, i) for each tap k and input index i < count with output o = 2i − 1 + k.
    @inline(__always)
    private static func forEachSource(of o: Int, count: Int, _ body: (Int, Int) -> Void) {
        let m = o / 2
        if o % 2 == 0 {
            body(1, m)
        } else {
            body(2, m)
            if m + 1 < count { body(0, m + 1) }
        }
    }

    /// The GEMM lowering: cols[(co, kz, ky, kx), n] = Σ_ci W[ci, co, k] · in[ci, n], then a
    /// scatter-add (col2im) of each tap into the doubled grid, chunk of planes by chunk.
    private func gemmForward(
        _ input: Tensor<Scalar>, into output: Tensor<Scalar>, threads: Int, progress: (Double) throws -> Void
    ) throws {
        let inSize = input.size, outSize = output.size
        let plane = inSize.x * inSize.y
        let rows = outChannels * 27
        let chunk = Self.planesPerChunk(inSize, outChannels: outChannels)
        let columns = try Buffer<Scalar>(count: rows * chunk * plane, zeroed: false)
        try weight.withUnsafeBufferPointer { w in
            nonisolated(unsafe) let w = w.baseAddress!
            for z0 in stride(from: 0, to: inSize.z, by: chunk) {
                let planes = z0..<min(z0 + chunk, inSize.z), n = planes.count * plane
                // GEMM, split by column ranges across threads: each column is one input voxel.
                parallelChunks(n, threads: threads) { _, range in
                    Scalar.gemm(
                        transposeA: true, transposeB: false, m: rows, n: range.count, k: inChannels,
                        alpha: 1, a: w, lda: rows,
                        b: input.storage.pointer + z0 * plane + range.lowerBound, ldb: inSize.voxelCount,
                        beta: 0, c: columns.pointer + range.lowerBound, ldc: n)
                }
                // col2im, split by output channel so each output value has one writer and a
                // fixed summation order.
                parallelFor(outChannels, threads: threads) { co in
                    let out = output.channel(co)
                    for tap in 0..<27 {
                        let src = columns.pointer + (co * 27 + tap) * n
                        Self.forEachTapRow(inSize, planes: planes, tap: tap) { srcRow, dstRow, firstX, kx in
                            // Row pointers, so the loop has no per-element overflow check.
                            let from = src + srcRow, to = out + (dstRow - 1 + kx)
                            for ix in firstX..<inSize.x { to[2 &* ix] += from[ix] }
                        }
                    }
                }
                try progress(Double(planes.upperBound) / Double(inSize.z))
            }
        }
        parallelFor(outChannels, threads: threads) { co in
            addBias(bias[co], relu: relu, to: output.channel(co), count: outSize.voxelCount)
        }
    }

    /// Backward pass. Shapes: input X [Cin, Z, Y, X], output Y and dL/dY [Cout, 2Z, 2Y, 2X]
    /// → dL/dX [Cin, Z, Y, X], dL/dW [Cin, Cout, 3, 3, 3], dL/db [Cout].
    /// The gather G[(co, k), i] = dZ[co, 2i − 1 + k] is the adjoint of the forward's col2im;
    /// then dX = W · G and dW = X · Gᵀ as GEMMs, chunk by chunk in plane order.
    public func backward(
        input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
        threads: Int
    ) throws -> LayerGradients<Scalar> {
        try withSingleThreadedBLAS {
            try unscopedBackward(input: input, output: output, outputGradient: outputGradient, threads: threads)
        }
    }

    private func unscopedBackward(
        input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
        threads: Int
    ) throws -> LayerGradients<Scalar> {
        let dZ = try preActivationGradient(output: output, outputGradient: outputGradient, relu: relu, threads: threads)
        let bias = channelSums(dZ, threads: threads)
        let inSize = input.size, plane = inSize.x * inSize.y, rows = outChannels * 27
        let inputGradient = try Tensor<Scalar>(channels: inChannels, size: inSize, zeroed: false)
        var weightGradient = [Scalar](repeating: 0, count: weight.count)
        let chunk = Self.planesPerChunk(inSize, outChannels: outChannels)
        let gathered = try Buffer<Scalar>(count: rows * chunk * plane, zeroed: false)
        weight.withUnsafeBufferPointer { w in
            weightGradient.withUnsafeMutableBufferPointer { dW in
                nonisolated(unsafe) let w = w.baseAddress!, dW = dW.baseAddress!
                for z0 in stride(from: 0, to: inSize.z, by: chunk) {
                    let planes = z0..<min(z0 + chunk, inSize.z), n = planes.count * plane
                    parallelFor(outChannels, threads: threads) { co in
                        let src = dZ.channel(co)
                        for tap in 0..<27 {
                            let g = gathered.pointer + (co * 27 + tap) * n
                            g.update(repeating: 0, count: n)
                            Self.forEachTapRow(inSize, planes: planes, tap: tap) { row, srcRow, firstX, kx in
                                for ix in firstX..<inSize.x { g[row + ix] = src[srcRow + 2 * ix - 1 + kx] }
                            }
                        }
                    }
                    // dX and dW of the chunk side by side, each one whole GEMM whatever the
                    // thread count: OpenBLAS gives a column other bits in part of a product
                    // than in the whole, so splitting dX's columns across threads made
                    // training depend on --threads. The two take about the same time
                    // (Cin·n·27·Cout multiply–adds each).
                    parallelFor(2, threads: threads) { product in
                        if product == 0 {
                            Scalar.gemm(
                                transposeA: false, transposeB: false, m: inChannels, n: n, k: rows,
                                alpha: 1, a: w, lda: rows, b: gathered.pointer, ldb: n,
                                beta: 0, c: inputGradient.storage.pointer + z0 * plane, ldc: inSize.voxelCount)
                        } else {
                            Scalar.gemm(
                                transposeA: false, transposeB: true, m: inChannels, n: rows, k: n,
                                alpha: 1, a: input.storage.pointer + z0 * plane, lda: inSize.voxelCount,
                                b: gathered.pointer, ldb: n, beta: 1, c: dW, ldc: rows)
                        }
                    }
                }
            }
        }
        return LayerGradients(input: inputGradient, weight: weightGradient, bias: bias)
    }

    /// For tap k = (kz, ky, kx), calls body(inputRow, outputRow, firstX, kx) for every input
    /// row (iz ∈ planes, iy) whose output row (2iz − 1 + kz, 2iy − 1 + ky) lies in the
    /// doubled grid: inputRow is the row's offset within the chunk's columns, outputRow the
    /// output row's offset in its channel; input x ≥ firstX maps to output x 2x − 1 + kx.
    @inline(__always)
    private static func forEachTapRow(
        _ inSize: GridSize, planes: Range<Int>, tap: Int,
        _ body: (Int, Int, Int, Int) -> Void
    ) {
        let (kz, ky, kx) = (tap / 9, (tap / 3) % 3, tap % 3)
        let outSize = inSize.multiplied(by: 2)
        for iz in planes {
            let oz = 2 * iz - 1 + kz
            guard oz >= 0, oz < outSize.z else { continue }
            for iy in 0..<inSize.y {
                let oy = 2 * iy - 1 + ky
                guard oy >= 0, oy < outSize.y else { continue }
                // ox = 2·ix − 1 + kx < 2X always; ox ≥ 0 excludes ix = 0 for kx = 0.
                body(
                    ((iz - planes.lowerBound) * inSize.y + iy) * inSize.x, (oz * outSize.y + oy) * outSize.x,
                    kx == 0 ? 1 : 0, kx)
            }
        }
    }
}
