import COpenBLAS

/// How a convolution layer computes its output. Every algorithm computes the same
/// function; a layer picks one (the seam where an FFT algorithm for the large 9×9×7 and
/// 7×7×5 kernels will plug in).
public enum ConvolutionAlgorithm: String, Sendable, CaseIterable {
    /// Lowering to matrix products: im2col blocks multiplied by the weights with `cblas_sgemm`.
    case im2colGEMM
}

/// A 3-D convolution with "same" zero padding, stride 1, bias, and optional fused ReLU.
///
/// Shapes: input [Cin, Z, Y, X] → output [Cout, Z, Y, X];
/// weight [Cout, Cin, kz, ky, kx] (PyTorch Conv3d layout), bias [Cout]. Kernel extents are odd.
public struct Convolution3D: Sendable {
    /// Input channels.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// Kernel extent along x, y and z (each odd).
    public let kernel: GridSize
    /// Weights, [Cout][Cin][kz][ky][kx].
    public let weight: [Float]
    /// One bias per output channel.
    public let bias: [Float]
    /// Whether a ReLU follows.
    public let relu: Bool
    /// The algorithm used by `forward`.
    public var algorithm: ConvolutionAlgorithm = .im2colGEMM

    /// Creates a layer; sizes must agree (the model loader validates file contents first).
    public init(inChannels: Int, outChannels: Int, kernel: GridSize, weight: [Float], bias: [Float], relu: Bool) {
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

    /// Forward pass: [Cin, Z, Y, X] → [Cout, Z, Y, X].
    public func forward(_ input: Tensor, threads: Int) throws -> Tensor {
        precondition(input.channels == inChannels)
        let output = try Tensor(channels: outChannels, size: input.size, zeroed: false)
        switch algorithm {
        case .im2colGEMM:
            if kernel.voxelCount == 1 {
                pointwiseForward(input, output, threads: threads)
            } else {
                try im2colForward(input, output, threads: threads)
            }
        }
        return output
    }

    // MARK: im2col + GEMM

    /// Output positions per GEMM block, and im2col rows per GEMM: one K-chunk of the
    /// im2col matrix (chunkRows × blockColumns floats, 256 KiB) stays in a core's L2 cache
    /// between being written and being multiplied; chunks accumulate into the block's
    /// product (beta = 1), which also stays cached. Measured on the paper network
    /// (160×160×72, one thread): 1-MiB chunks ran 1.7× slower, whole-K im2col 2.5×.
    static let blockColumns = 256
    static let chunkRows = 256

    /// A kernel of 1×1×1 is a plain matrix product: out[Cout, V] = W[Cout, Cin] · in[Cin, V].
    private func pointwiseForward(_ input: Tensor, _ output: Tensor, threads: Int) {
        _ = configureBLASOnce
        let voxels = input.size.voxelCount
        let blocks = (voxels + Self.blockColumns - 1) / Self.blockColumns
        weight.withUnsafeBufferPointer { w in
            nonisolated(unsafe) let w = w.baseAddress!
            parallelFor(blocks, threads: threads) { b in
                let start = b * Self.blockColumns, n = min(Self.blockColumns, voxels - start)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                            Int32(outChannels), Int32(n), Int32(inChannels),
                            1, w, Int32(inChannels),
                            input.storage.pointer + start, Int32(voxels),
                            0, output.storage.pointer + start, Int32(voxels))
                for co in 0..<outChannels {
                    applyBiasAndActivation(output.channel(co) + start, count: n, bias: bias[co])
                }
            }
        }
    }

    /// The input is copied once into a zero-padded volume whose rows are widened by the
    /// kernel's x padding. On that grid, every im2col row for tap (c, kz, ky, kx) and a run
    /// of output positions (one z plane, consecutive y rows, all padded x columns) is a
    /// single contiguous slice, so im2col is K memcpy's per block. The padded x columns
    /// (about 5–10 % extra work) are computed and discarded.
    private func im2colForward(_ input: Tensor, _ output: Tensor, threads: Int) throws {
        _ = configureBLASOnce
        let size = input.size
        let (px, py, pz) = (kernel.x / 2, kernel.y / 2, kernel.z / 2)
        let padded = GridSize(x: size.x + 2 * px, y: size.y + 2 * py, z: size.z + 2 * pz)
        let paddedVoxels = padded.voxelCount
        // Slack after the last channel: the discarded columns of the last row read past it.
        let paddedInput = try FloatBuffer(count: inChannels * paddedVoxels + 2 * px + 1, zeroed: true)
        let inputRef = input
        parallelFor(inChannels * size.z, threads: threads) { cz in
            let (c, z) = (cz / size.z, cz % size.z)
            for y in 0..<size.y {
                let src = inputRef.channel(c) + (z * size.y + y) * size.x
                let dst = paddedInput.pointer + c * paddedVoxels + ((z + pz) * padded.y + y + py) * padded.x + px
                dst.update(from: src, count: size.x)
            }
        }

        let k = inChannels * kernel.voxelCount
        let planeColumns = size.y * padded.x          // output positions per z plane, padded x
        let blocksPerPlane = (planeColumns + Self.blockColumns - 1) / Self.blockColumns
        // Offset of each im2col row's source relative to the output position's own offset.
        var rowOffsets = [Int](repeating: 0, count: k)
        var r = 0
        for c in 0..<inChannels {
            for dz in 0..<kernel.z { for dy in 0..<kernel.y { for dx in 0..<kernel.x {
                rowOffsets[r] = c * paddedVoxels + (dz * padded.y + dy) * padded.x + dx
                r += 1
            } } }
        }
        let workers = min(max(1, threads), size.z * blocksPerPlane)
        let chunkRows = min(k, Self.chunkRows)
        let columns = try FloatBuffer(count: workers * chunkRows * Self.blockColumns, zeroed: false)
        let products = try FloatBuffer(count: workers * outChannels * Self.blockColumns, zeroed: false)

        weight.withUnsafeBufferPointer { w in
            rowOffsets.withUnsafeBufferPointer { offsets in
                nonisolated(unsafe) let w = w.baseAddress!
                nonisolated(unsafe) let offsets = offsets.baseAddress!
                parallelChunks(size.z * blocksPerPlane, threads: workers) { worker, tasks in
                    let col = columns.pointer + worker * chunkRows * Self.blockColumns
                    let prod = products.pointer + worker * outChannels * Self.blockColumns
                    for task in tasks {
                        let z = task / blocksPerPlane
                        let first = (task % blocksPerPlane) * Self.blockColumns
                        let n = min(Self.blockColumns, planeColumns - first)
                        let base = paddedInput.pointer + z * padded.y * padded.x + first
                        for first in stride(from: 0, to: k, by: chunkRows) {
                            let rows = min(chunkRows, k - first)
                            for row in 0..<rows {
                                (col + row * n).update(from: base + offsets[first + row], count: n)
                            }
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                                        Int32(outChannels), Int32(n), Int32(rows),
                                        1, w + first, Int32(k), col, Int32(n), first == 0 ? 0 : 1, prod, Int32(n))
                        }
                        // Scatter the valid columns (x < X) of each padded row into the output.
                        for co in 0..<outChannels {
                            let dstPlane = output.channel(co) + z * size.y * size.x
                            var j = 0
                            while j < n {
                                let position = first + j
                                let (y, x) = (position / padded.x, position % padded.x)
                                let run = min(n - j, padded.x - x)
                                if x < size.x {
                                    let valid = min(run, size.x - x)
                                    let dst = dstPlane + y * size.x + x
                                    dst.update(from: prod + co * n + j, count: valid)
                                    applyBiasAndActivation(dst, count: valid, bias: bias[co])
                                }
                                j += run
                            }
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    private func applyBiasAndActivation(_ p: UnsafeMutablePointer<Float>, count: Int, bias: Float) {
        if relu {
            for i in 0..<count { p[i] = max(p[i] + bias, 0) }
        } else {
            for i in 0..<count { p[i] += bias }
        }
    }
}
