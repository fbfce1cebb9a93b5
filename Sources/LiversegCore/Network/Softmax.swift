/// Channel-wise softmax over class scores.
///
/// Shapes: scores [K, Z, Y, X] → probability of class `targetClass`, [Z, Y, X].
public enum Softmax: Sendable {
    /// Writes the probability of `targetClass` at every voxel into `out` (voxelCount floats).
    public static func classProbability<Scalar: NetworkScalar>(_ scores: Tensor<Scalar>, targetClass: Int,
                                                               into out: UnsafeMutablePointer<Scalar>, threads: Int) {
        let voxels = scores.size.voxelCount, classes = scores.channels
        let base = scores.storage.pointer
        nonisolated(unsafe) let out = out
        parallelChunks(voxels, threads: threads) { _, range in
            for v in range {
                var m = -Scalar.infinity
                for c in 0..<classes { m = max(m, base[c * voxels + v]) }
                var sum: Scalar = 0
                for c in 0..<classes { sum += Scalar.exponential(base[c * voxels + v] - m) }
                out[v] = Scalar.exponential(base[targetClass * voxels + v] - m) / sum
            }
        }
    }
}
