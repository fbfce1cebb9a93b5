import COpenBLAS

/// A 3×3×3 transposed convolution with stride 2 that doubles every extent
/// (PyTorch ConvTranspose3d(kernel 3, stride 2, padding 1, output_padding 1)), bias, and
/// optional fused ReLU: the paper's "deconvolution" layers.
///
/// Shapes: input [Cin, Z, Y, X] → output [Cout, 2Z, 2Y, 2X];
/// weight [Cin, Cout, 3, 3, 3] (PyTorch ConvTranspose3d layout), bias [Cout].
/// Input voxel i contributes to output 2i − 1 + k for tap k ∈ {0, 1, 2} on each axis.
public struct TransposedConvolution3D: Sendable {
    /// Input channels.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// Weights, [Cin][Cout][3][3][3].
    public let weight: [Float]
    /// One bias per output channel.
    public let bias: [Float]
    /// Whether a ReLU follows.
    public let relu: Bool

    /// Kernel extent along each axis.
    public static let kernelSize = 3

    /// Creates a layer; sizes must agree.
    public init(inChannels: Int, outChannels: Int, weight: [Float], bias: [Float], relu: Bool) {
        precondition(weight.count == inChannels * outChannels * 27 && bias.count == outChannels)
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.weight = weight
        self.bias = bias
        self.relu = relu
    }

    /// Multiply-accumulates of one forward pass from an input of `size`.
    public func macs(over size: GridSize) -> Int { inChannels * outChannels * 27 * size.voxelCount }

    /// Input z planes per GEMM: bounds the column buffer to about `planesPerChunk` ×
    /// (27 · Cout) × (X · Y) floats.
    private static func planesPerChunk(_ size: GridSize, outChannels: Int) -> Int {
        max(1, min(size.z, (4 << 20) / max(1, 27 * outChannels * size.x * size.y)))
    }

    /// Forward pass: the GEMM cols[(co, kz, ky, kx), n] = Σ_ci W[ci, co, k] · in[ci, n]
    /// followed by a scatter-add (col2im) of each tap into the doubled grid.
    public func forward(_ input: Tensor, threads: Int) throws -> Tensor {
        _ = configureBLASOnce
        precondition(input.channels == inChannels)
        let inSize = input.size, outSize = input.size.multiplied(by: 2)
        let output = try Tensor(channels: outChannels, size: outSize, zeroed: true)
        let plane = inSize.x * inSize.y
        let rows = outChannels * 27
        let chunk = Self.planesPerChunk(inSize, outChannels: outChannels)
        let columns = try FloatBuffer(count: rows * chunk * plane, zeroed: false)
        weight.withUnsafeBufferPointer { w in
            nonisolated(unsafe) let w = w.baseAddress!
            for z0 in stride(from: 0, to: inSize.z, by: chunk) {
                let nz = min(chunk, inSize.z - z0), n = nz * plane
                // GEMM, split by column ranges across threads: each column is one input voxel.
                parallelChunks(n, threads: threads) { _, range in
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
                                Int32(rows), Int32(range.count), Int32(inChannels),
                                1, w, Int32(rows),
                                input.storage.pointer + z0 * plane + range.lowerBound, Int32(inSize.voxelCount),
                                0, columns.pointer + range.lowerBound, Int32(n))
                }
                // col2im, split by output channel so each output value has one writer and a
                // fixed summation order.
                parallelFor(outChannels, threads: threads) { co in
                    let out = output.channel(co)
                    for tap in 0..<27 {
                        let (kz, ky, kx) = (tap / 9, (tap / 3) % 3, tap % 3)
                        let src = columns.pointer + (co * 27 + tap) * n
                        for iz in z0..<(z0 + nz) {
                            let oz = 2 * iz - 1 + kz
                            guard oz >= 0, oz < outSize.z else { continue }
                            for iy in 0..<inSize.y {
                                let oy = 2 * iy - 1 + ky
                                guard oy >= 0, oy < outSize.y else { continue }
                                let srcRow = src + ((iz - z0) * inSize.y + iy) * inSize.x
                                let dstRow = out + (oz * outSize.y + oy) * outSize.x
                                // ox = 2·ix − 1 + kx < 2X always; ox ≥ 0 excludes ix = 0 for kx = 0.
                                for ix in (kx == 0 ? 1 : 0)..<inSize.x { dstRow[2 * ix - 1 + kx] += srcRow[ix] }
                            }
                        }
                    }
                }
            }
        }
        parallelFor(outChannels, threads: threads) { co in
            let p = output.channel(co), b = bias[co]
            if relu {
                for i in 0..<outSize.voxelCount { p[i] = max(p[i] + b, 0) }
            } else {
                for i in 0..<outSize.voxelCount { p[i] += b }
            }
        }
        return output
    }
}
