#if canImport(Glibc)
import Glibc
#endif

/// Channel-wise softmax over class scores.
///
/// Shapes: scores [K, Z, Y, X] → probability of class `targetClass`, [Z, Y, X].
public enum Softmax: Sendable {
    /// Writes the probability of `targetClass` at every voxel into `out` (voxelCount floats).
    public static func classProbability(_ scores: Tensor, targetClass: Int,
                                        into out: UnsafeMutablePointer<Float>, threads: Int) {
        let voxels = scores.size.voxelCount, classes = scores.channels
        let base = scores.storage.pointer
        nonisolated(unsafe) let out = out
        parallelChunks(voxels, threads: threads) { _, range in
            for v in range {
                var m = -Float.infinity
                for c in 0..<classes { m = max(m, base[c * voxels + v]) }
                var sum: Float = 0
                for c in 0..<classes { sum += expf(base[c * voxels + v] - m) }
                out[v] = expf(base[targetClass * voxels + v] - m) / sum
            }
        }
    }
}
