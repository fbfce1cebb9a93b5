import LiversegSupport

/// How a convolution layer computes its output and gradients. Every algorithm computes the
/// same function up to rounding; a layer picks one per grid size (`chosenAlgorithm(over:)`).
public enum ConvolutionAlgorithm: String, Sendable, CaseIterable {
    /// Lowering to matrix products: im2col blocks multiplied by the weights with `cblas_sgemm`.
    case im2colGEMM
    /// Overlap-save FFT convolution: real 3-D FFTs of blocks, the channel sums per frequency.
    case fft
}

/// A 3-D convolution with "same" zero padding, stride 1, bias, and optional fused ReLU.
///
/// Shapes: input [Cin, Z, Y, X] → output [Cout, Z, Y, X];
/// weight [Cout, Cin, kz, ky, kx] (PyTorch Conv3d layout), bias [Cout]. Kernel extents are odd.
public struct Convolution3D<Scalar: NetworkScalar>: Sendable {
    /// Input channels.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// Kernel extent along x, y and z (each odd).
    public let kernel: GridSize
    /// Weights, [Cout][Cin][kz][ky][kx].
    public let weight: [Scalar]
    /// One bias per output channel.
    public let bias: [Scalar]
    /// Whether a ReLU follows.
    public let relu: Bool
    /// The algorithm of `forward` and `backward`; nil: chosen per grid size (`chosenAlgorithm(over:)`).
    public var algorithm: ConvolutionAlgorithm?
    /// Kernel spectra of the FFT algorithm, per block size.
    let spectrumCache = KernelSpectrumCache<Scalar>()

    /// Creates a layer; sizes must agree (the model loader validates file contents first).
    public init(inChannels: Int, outChannels: Int, kernel: GridSize, weight: [Scalar], bias: [Scalar], relu: Bool) {
        precondition(kernel.x % 2 == 1 && kernel.y % 2 == 1 && kernel.z % 2 == 1)
        precondition(weight.count == outChannels * inChannels * kernel.voxelCount && bias.count == outChannels)
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernel = kernel
        self.weight = weight
        self.bias = bias
        self.relu = relu
    }

    /// Multiply-accumulates of one forward pass over `size`.
    public func macs(over size: GridSize) -> Int { outChannels * inChannels * kernel.voxelCount * size.voxelCount }

    /// Forward pass: [Cin, Z, Y, X] → [Cout, Z, Y, X]. `progress` receives the fraction
    /// of the layer done, on the calling thread, between rounds of work (`parallelRounds`);
    /// it may throw to stop.
    public func forward(
        _ input: Tensor<Scalar>, threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws -> Tensor<Scalar> {
        precondition(input.channels == inChannels)
        let output = try Tensor<Scalar>(channels: outChannels, size: input.size, zeroed: false)
        try withSingleThreadedBLAS {
            if let blocking = fftBlockingIfChosen(over: input.size) {
                try overlapSave(input, into: output, adjoint: false, blocking: blocking, threads: threads, progress: progress)
            } else if kernel.voxelCount == 1 {
                try pointwiseForward(input, output, threads: threads, progress: progress)
            } else {
                try im2colForward(input, output, threads: threads, progress: progress)
            }
        }
        return output
    }

    /// Backward pass. Shapes: input X [Cin, Z, Y, X], output Y and dL/dY [Cout, Z, Y, X]
    /// → dL/dX [Cin, Z, Y, X], dL/dW [Cout, Cin, kz, ky, kx], dL/db [Cout].
    /// With Z the pre-activation (dZ = dY ⊙ [Y > 0] after a ReLU), by im2colGEMM:
    /// dX = dZ convolved with the transposed, flipped kernel (the same forward code);
    /// dW[co, tap] = Σ_voxels dZ[co] · im2col(X)[tap] (the forward's lowering);
    /// by FFT: dX and dW as in `overlapSave` and `fftWeightGradient`.
    /// db[co] = Σ_voxels dZ[co]. Sums run in a fixed order: results do not depend on threads.
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
        if let blocking = fftBlockingIfChosen(over: input.size) {
            let inputGradient = try Tensor<Scalar>(channels: inChannels, size: input.size, zeroed: false)
            try overlapSave(dZ, into: inputGradient, adjoint: true, blocking: blocking, threads: threads)
            let weightGradient = try fftWeightGradient(input, dZ, blocking: blocking, threads: threads)
            return LayerGradients(input: inputGradient, weight: weightGradient, bias: bias)
        }
        // The adjoint of a "same" convolution with an odd kernel is a "same" convolution with
        // the kernel flipped in space and its channel axes swapped.
        var adjoint = [Scalar](repeating: 0, count: weight.count)
        let taps = kernel.voxelCount
        for co in 0..<outChannels {
            for ci in 0..<inChannels {
                for t in 0..<taps {
                    adjoint[(ci * outChannels + co) * taps + taps - 1 - t] = weight[(co * inChannels + ci) * taps + t]
                }
            }
        }
        var transposed = Convolution3D(
            inChannels: outChannels, outChannels: inChannels, kernel: kernel,
            weight: adjoint, bias: [Scalar](repeating: 0, count: inChannels), relu: false)
        transposed.algorithm = .im2colGEMM
        let inputGradient = try transposed.forward(dZ, threads: threads)
        let weightGradient = try im2colWeightGradient(input, dZ, threads: threads)
        return LayerGradients(input: inputGradient, weight: weightGradient, bias: bias)
    }

    // MARK: im2col + GEMM

    /// Output positions per GEMM block, and im2col rows per GEMM: one K-chunk of the
    /// im2col matrix (chunkRows × blockColumns floats, 256 KiB) stays in a core's L2 cache
    /// between being written and being multiplied; chunks accumulate into the block's
    /// product (beta = 1), which also stays cached. Measured on the paper network
    /// (160×160×72, one thread): 1-MiB chunks ran 1.7× slower, whole-K im2col 2.5×.
    static var blockColumns: Int { 256 }
    static var chunkRows: Int { 256 }

    /// A kernel of 1×1×1 is a plain matrix product: out[Cout, V] = W[Cout, Cin] · in[Cin, V].
    private func pointwiseForward(
        _ input: Tensor<Scalar>, _ output: Tensor<Scalar>, threads: Int,
        progress: (Double) throws -> Void
    ) throws {
        let voxels = input.size.voxelCount
        let blocks = (voxels + Self.blockColumns - 1) / Self.blockColumns
        try weight.withUnsafeBufferPointer { w in
            nonisolated(unsafe) let w = w.baseAddress!
            try parallelRounds(blocks, threads: threads, checkpoint: progress) { _, range in
                for b in range {
                    let start = b * Self.blockColumns, n = min(Self.blockColumns, voxels - start)
                    Scalar.gemm(
                        transposeA: false, transposeB: false, m: outChannels, n: n, k: inChannels,
                        alpha: 1, a: w, lda: inChannels, b: input.storage.pointer + start, ldb: voxels,
                        beta: 0, c: output.storage.pointer + start, ldc: voxels)
                    for co in 0..<outChannels {
                        applyBiasAndActivation(output.channel(co) + start, count: n, bias: bias[co])
                    }
                }
            }
        }
    }

    private func im2colForward(
        _ input: Tensor<Scalar>, _ output: Tensor<Scalar>, threads: Int,
        progress: (Double) throws -> Void
    ) throws {
        let lowering = try Im2colLowering(input, kernel: kernel, threads: threads)
        let k = lowering.rowCount, chunkRows = min(k, Self.chunkRows), size = input.size
        let workers = min(max(1, threads), size.z * lowering.blocksPerPlane)
        let columns = try Buffer<Scalar>(count: workers * chunkRows * Self.blockColumns, zeroed: false)
        let products = try Buffer<Scalar>(count: workers * outChannels * Self.blockColumns, zeroed: false)
        try weight.withUnsafeBufferPointer { w in
            nonisolated(unsafe) let w = w.baseAddress!
            try parallelRounds(
                size.z * lowering.blocksPerPlane, threads: workers,
                checkpoint: progress
            ) { worker, tasks in
                let col = columns.pointer + worker * chunkRows * Self.blockColumns
                let prod = products.pointer + worker * outChannels * Self.blockColumns
                for task in tasks {
                    let (z, block) = task.quotientAndRemainder(dividingBy: lowering.blocksPerPlane)
                    let (first, n) = lowering.block(block)
                    for rowStart in stride(from: 0, to: k, by: chunkRows) {
                        let rows = min(chunkRows, k - rowStart)
                        lowering.fill(col, plane: z, first: first, count: n, rows: rowStart..<(rowStart + rows))
                        Scalar.gemm(
                            transposeA: false, transposeB: false, m: outChannels, n: n, k: rows,
                            alpha: 1, a: w + rowStart, lda: k, b: col, ldb: n,
                            beta: rowStart == 0 ? 0 : 1, c: prod, ldc: n)
                    }
                    // The valid columns (x < X) of each padded row go to the output.
                    lowering.forEachValidRun(first: first, count: n) { y, x, j, run in
                        for co in 0..<outChannels {
                            let dst = output.channel(co) + (z * size.y + y) * size.x + x
                            dst.update(from: prod + co * n + j, count: run)
                            applyBiasAndActivation(dst, count: run, bias: bias[co])
                        }
                    }
                }
            }
        }
    }

    /// dW[co, tap] = Σ over positions of dZ[co, position] · im2col(X)[tap, position], as
    /// GEMMs dZ_block · col_chunkᵀ. Each z plane sums into its own partial, and the
    /// partials are added in plane order, so the result is independent of the thread count.
    private func im2colWeightGradient(_ input: Tensor<Scalar>, _ dZ: Tensor<Scalar>, threads: Int) throws -> [Scalar] {
        let lowering = try Im2colLowering(input, kernel: kernel, threads: threads)
        let k = lowering.rowCount, chunkRows = min(k, Self.chunkRows), size = input.size
        let workers = min(max(1, threads), size.z)
        let columns = try Buffer<Scalar>(count: workers * chunkRows * Self.blockColumns, zeroed: false)
        let gradients = try Buffer<Scalar>(count: workers * outChannels * Self.blockColumns, zeroed: false)
        let partials = try Buffer<Scalar>(count: size.z * outChannels * k, zeroed: true)
        parallelChunks(size.z, threads: workers) { worker, planes in
            let col = columns.pointer + worker * chunkRows * Self.blockColumns
            let grad = gradients.pointer + worker * outChannels * Self.blockColumns
            for z in planes {
                let partial = partials.pointer + z * outChannels * k
                for block in 0..<lowering.blocksPerPlane {
                    let (first, n) = lowering.block(block)
                    // dZ laid out on the padded plane: zero in the discarded x columns.
                    grad.update(repeating: 0, count: outChannels * n)
                    lowering.forEachValidRun(first: first, count: n) { y, x, j, run in
                        for co in 0..<outChannels {
                            (grad + co * n + j).update(from: dZ.channel(co) + (z * size.y + y) * size.x + x, count: run)
                        }
                    }
                    for rowStart in stride(from: 0, to: k, by: chunkRows) {
                        let rows = min(chunkRows, k - rowStart)
                        lowering.fill(col, plane: z, first: first, count: n, rows: rowStart..<(rowStart + rows))
                        Scalar.gemm(
                            transposeA: false, transposeB: true, m: outChannels, n: rows, k: n,
                            alpha: 1, a: grad, lda: n, b: col, ldb: n, beta: 1, c: partial + rowStart, ldc: k)
                    }
                }
            }
        }
        var total = [Scalar](repeating: 0, count: outChannels * k)
        for z in 0..<size.z {
            let partial = partials.pointer + z * outChannels * k
            for i in 0..<total.count { total[i] += partial[i] }
        }
        return total
    }

    @inline(__always)
    private func applyBiasAndActivation(_ p: UnsafeMutablePointer<Scalar>, count: Int, bias: Scalar) {
        addBias(bias, relu: relu, to: p, count: count)
    }
}

/// p[i] ← p[i] + bias, then max(·, 0) when `relu`: the epilogue of every layer.
@_specialize(where Scalar == Float)
@_specialize(where Scalar == Double)
func addBias<Scalar: NetworkScalar>(_ bias: Scalar, relu: Bool, to p: UnsafeMutablePointer<Scalar>, count: Int) {
    if relu {
        for i in 0..<count { p[i] = max(p[i] + bias, 0) }
    } else {
        for i in 0..<count { p[i] += bias }
    }
}

/// The im2col view of a convolution input shared by the forward pass and the weight
/// gradient. The input is copied once into a zero-padded volume whose rows are widened by
/// the kernel's x padding. On that grid, every im2col row for tap (c, kz, ky, kx) and a run
/// of output positions (one z plane, consecutive y rows, all padded x columns) is a single
/// contiguous slice, so im2col is one memcpy per row. The padded x columns (about 5–10 %
/// extra work) are computed and discarded.
struct Im2colLowering<Scalar: NetworkScalar> {
    /// The zero-padded input, [Cin][Z + 2pz][Y + 2py][X + 2px], plus slack.
    let paddedInput: Buffer<Scalar>
    /// Extents of the padded grid.
    let padded: GridSize
    /// Extents of the unpadded grid (also the output's).
    let size: GridSize
    /// Offset of each im2col row's source relative to the output position's own offset.
    let rowOffsets: [Int]
    /// Output positions per z plane on the padded grid: Y rows of padded width.
    let planeColumns: Int

    /// Number of im2col rows: Cin × kernel taps.
    var rowCount: Int { rowOffsets.count }
    /// GEMM blocks per z plane.
    var blocksPerPlane: Int { (planeColumns + blockColumns - 1) / blockColumns }
    private var blockColumns: Int { Convolution3D<Scalar>.blockColumns }

    init(_ input: Tensor<Scalar>, kernel: GridSize, threads: Int) throws {
        let size = input.size, channels = input.channels
        let (px, py, pz) = (kernel.x / 2, kernel.y / 2, kernel.z / 2)
        let padded = GridSize(x: size.x + 2 * px, y: size.y + 2 * py, z: size.z + 2 * pz)
        let paddedVoxels = padded.voxelCount
        // Slack after the last channel: the discarded columns of the last row read past it.
        let buffer = try Buffer<Scalar>(count: channels * paddedVoxels + 2 * px + 1, zeroed: true)
        parallelFor(channels * size.z, threads: threads) { cz in
            let (c, z) = cz.quotientAndRemainder(dividingBy: size.z)
            for y in 0..<size.y {
                let src = input.channel(c) + (z * size.y + y) * size.x
                let dst = buffer.pointer + c * paddedVoxels + ((z + pz) * padded.y + y + py) * padded.x + px
                dst.update(from: src, count: size.x)
            }
        }
        var offsets: [Int] = []
        offsets.reserveCapacity(channels * kernel.voxelCount)
        for c in 0..<channels {
            for dz in 0..<kernel.z {
                for dy in 0..<kernel.y {
                    for dx in 0..<kernel.x {
                        offsets.append(c * paddedVoxels + (dz * padded.y + dy) * padded.x + dx)
                    }
                }
            }
        }
        self.paddedInput = buffer
        self.padded = padded
        self.size = size
        self.rowOffsets = offsets
        self.planeColumns = size.y * padded.x
    }

    /// First padded-plane position and column count of block `index`.
    func block(_ index: Int) -> (first: Int, count: Int) {
        let first = index * blockColumns
        return (first, min(blockColumns, planeColumns - first))
    }

    /// Writes im2col rows `rows` for `count` positions from `first` of plane `plane` into
    /// `col` (rows.count × count, row-major).
    @inline(__always)
    func fill(_ col: UnsafeMutablePointer<Scalar>, plane: Int, first: Int, count: Int, rows: Range<Int>) {
        let base = paddedInput.pointer + plane * padded.y * padded.x + first
        rowOffsets.withUnsafeBufferPointer { offsets in
            for (i, row) in rows.enumerated() {
                (col + i * count).update(from: base + offsets[row], count: count)
            }
        }
    }

    /// Calls body(y, x, j, run) for each run of valid output voxels (x < X) among `count`
    /// padded positions from `first`: positions first + j ..< first + j + run.
    @inline(__always)
    func forEachValidRun(first: Int, count: Int, _ body: (Int, Int, Int, Int) -> Void) {
        var j = 0
        while j < count {
            let (y, x) = (first + j).quotientAndRemainder(dividingBy: padded.x)
            let run = min(count - j, padded.x - x)
            if x < size.x { body(y, x, j, min(run, size.x - x)) }
            j += run
        }
    }
}

/// Gradients of one layer for backpropagation.
public struct LayerGradients<Scalar: NetworkScalar> {
    /// dL/dInput, shaped as the layer's input.
    public let input: Tensor<Scalar>
    /// dL/dWeight, laid out as the layer's weight.
    public let weight: [Scalar]
    /// dL/dBias, one per output channel.
    public let bias: [Scalar]
}

/// dL/dZ for a layer whose output is Y = act(Z): dY ⊙ [Y > 0] after a ReLU, else dY itself.
func preActivationGradient<Scalar: NetworkScalar>(
    output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
    relu: Bool, threads: Int
) throws -> Tensor<Scalar> {
    guard relu else { return outputGradient }
    let dZ = try Tensor<Scalar>(channels: output.channels, size: output.size, zeroed: false)
    let (y, dy, dz) = (output.storage.pointer, outputGradient.storage.pointer, dZ.storage.pointer)
    parallelChunks(dZ.storage.count, threads: threads) { _, range in
        for i in range { dz[i] = y[i] > 0 ? dy[i] : 0 }
    }
    return dZ
}

/// Σ over voxels of each channel, in voxel order (the bias gradient).
func channelSums<Scalar: NetworkScalar>(_ t: Tensor<Scalar>, threads: Int) -> [Scalar] {
    var sums = [Scalar](repeating: 0, count: t.channels)
    sums.withUnsafeMutableBufferPointer { out in
        nonisolated(unsafe) let out = out.baseAddress!
        parallelFor(t.channels, threads: threads) { c in
            let p = t.channel(c)
            var s: Scalar = 0
            for i in 0..<t.size.voxelCount { s += p[i] }
            out[c] = s
        }
    }
    return sums
}
