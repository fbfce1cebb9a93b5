import LiversegSupport

/// Channel-wise softmax over class scores.
///
/// Shapes: scores [K, Z, Y, X] → probability of class `targetClass`, [Z, Y, X].
public enum Softmax: Sendable {
    /// Writes weight × the probability of `targetClass` at every voxel into `out`
    /// (voxelCount floats), or adds it to what `out` holds when `accumulating`.
    public static func classProbability<Scalar: NetworkScalar>(
        _ scores: Tensor<Scalar>, targetClass: Int,
        into out: UnsafeMutablePointer<Scalar>, weight: Scalar = 1, accumulating: Bool = false, threads: Int
    ) {
        let voxels = scores.size.voxelCount, classes = scores.channels
        let base = scores.storage.pointer
        nonisolated(unsafe) let out = out
        if classes == 2, (0..<2).contains(targetClass) {
            // p = 1 / (1 + e^(s_other − s_target)): one exponential per voxel and a loop
            // that vectorises (the general loop below, with libm calls, was 6 % of the paper
            // network's forward pass).
            let target = base + targetClass * voxels, other = base + (1 - targetClass) * voxels
            parallelChunks(voxels, threads: threads) { _, range in
                for v in range {
                    let p = weight / (1 + Scalar.vectorisableExponential(other[v] - target[v]))
                    out[v] = accumulating ? out[v] + p : p
                }
            }
            return
        }
        parallelChunks(voxels, threads: threads) { _, range in
            for v in range {
                var m = -Scalar.infinity
                for c in 0..<classes { m = max(m, base[c * voxels + v]) }
                var sum: Scalar = 0, target: Scalar = 0
                for c in 0..<classes {
                    let e = Scalar.exponential(base[c * voxels + v] - m)
                    sum += e
                    if c == targetClass { target = e }
                }
                let p = weight * target / sum
                out[v] = accumulating ? out[v] + p : p
            }
        }
    }

    /// Mean cross-entropy of class scores [K, Z, Y, X] against per-voxel labels (0..<K), and
    /// its gradient: loss = −(1/N) Σ_v log softmax(s_v)[t_v]; dL/ds = (softmax(s) − onehot(t)) / N.
    public static func crossEntropy<Scalar: NetworkScalar>(
        _ scores: Tensor<Scalar>, labels: UnsafePointer<UInt8>,
        threads: Int
    ) throws -> (loss: Scalar, gradient: Tensor<Scalar>) {
        let voxels = scores.size.voxelCount, classes = scores.channels
        let gradient = try Tensor<Scalar>(channels: classes, size: scores.size, zeroed: false)
        let (s, g) = (scores.storage.pointer, gradient.storage.pointer)
        let scale = 1 / Scalar(voxels)
        // Per-range partial losses, added in range order: independent of the thread count
        // only if the ranges are; so ranges are fixed blocks, not one per thread.
        let block = 4096, blocks = (voxels + block - 1) / block
        var partial = [Scalar](repeating: 0, count: blocks)
        partial.withUnsafeMutableBufferPointer { partial in
            nonisolated(unsafe) let partial = partial.baseAddress!
            parallelFor(blocks, threads: threads) { b in
                var sum: Scalar = 0
                for v in (b * block)..<min(voxels, (b + 1) * block) {
                    var m = -Scalar.infinity
                    for c in 0..<classes { m = max(m, s[c * voxels + v]) }
                    var z: Scalar = 0
                    for c in 0..<classes { z += Scalar.exponential(s[c * voxels + v] - m) }
                    let t = Int(labels[v])
                    sum += m + Scalar.logarithm(z) - s[t * voxels + v]
                    for c in 0..<classes {
                        let p = Scalar.exponential(s[c * voxels + v] - m) / z
                        g[c * voxels + v] = (p - (c == t ? 1 : 0)) * scale
                    }
                }
                partial[b] = sum
            }
        }
        return (partial.reduce(0, +) * scale, gradient)
    }
}
