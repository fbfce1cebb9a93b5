import LiversegSupport

/// The exact squared Euclidean distance transform of a 3D grid with anisotropic spacing:
/// for every voxel, the squared distance in mm² to the nearest feature voxel (+∞ when there
/// is none). Felzenszwalb & Huttenlocher's lower envelope of parabolas, one O(n) pass per
/// axis (Theory of Computing 8, 2012); exact, because the squared distance separates into
/// per-axis terms.
///
/// - Parameters:
///   - isFeature: one flag per voxel, x fastest.
///   - size: grid extents.
///   - spacing: voxel size in mm along x, y, z.
///   - threads: worker threads (0: all cores); the result does not depend on it.
package func squaredDistanceTransform(
    isFeature: UnsafeBufferPointer<Bool>, size: GridSize, spacing: [Double],
    threads: Int = 0
) throws -> [Double] {
    guard size.x >= 1, size.y >= 1, size.z >= 1 else {
        throw LiversegError.invalidArgument("distance transform: grid \(size) must be at least 1 along every axis")
    }
    let count = try checkedProduct([size.x, size.y, size.z], what: "distance transform grid")
    guard isFeature.count == count else {
        throw LiversegError.invalidArgument("distance transform: \(isFeature.count) flags for a \(size) grid")
    }
    guard spacing.count == 3, spacing.allSatisfy({ $0.isFinite && $0 > 0 }) else {
        throw LiversegError.invalidArgument("distance transform: spacing \(spacing) must be three finite values > 0")
    }
    var grid = isFeature.map { $0 ? 0 : Double.infinity }
    let workers = resolvedThreadCount(threads)
    let extents = [size.x, size.y, size.z], strides = [1, size.x, size.x * size.y]
    grid.withUnsafeMutableBufferPointer { buffer in
        nonisolated(unsafe) let g = buffer.baseAddress!
        for axis in 0..<3 {
            let n = extents[axis], stride = strides[axis], w2 = spacing[axis] * spacing[axis]
            // Lines along `axis`: one per voxel of the other two axes.
            let (a, b) = ((axis + 1) % 3, (axis + 2) % 3)
            let lines = extents[a] * extents[b]
            parallelChunks(lines, threads: workers) { _, range in
                var scratch = EnvelopeScratch(capacity: n)
                for line in range {
                    let start = (line % extents[a]) * strides[a] + (line / extents[a]) * strides[b]
                    scratch.transform(g + start, count: n, stride: stride, weight: w2)
                }
            }
        }
    }
    return grid
}

/// Per-thread buffers of the 1D transform.
private struct EnvelopeScratch {
    var f: [Double], vertices: [Int], boundaries: [Double]

    init(capacity n: Int) {
        f = [Double](repeating: 0, count: n)
        vertices = [Int](repeating: 0, count: n)
        boundaries = [Double](repeating: 0, count: n + 1)
    }

    /// Replaces the `count` values at `line` (every `stride`-th element) by
    /// min_q weight·(p − q)² + value(q): the lower envelope of parabolas rooted at the
    /// finite values.
    mutating func transform(_ line: UnsafeMutablePointer<Double>, count n: Int, stride: Int, weight w2: Double) {
        for q in 0..<n { f[q] = line[q * stride] }
        var k = -1
        for q in 0..<n where f[q] < .infinity {
            let fq = f[q] + w2 * Double(q * q)
            var s = -Double.infinity
            while k >= 0 {
                let p = vertices[k]
                s = (fq - (f[p] + w2 * Double(p * p))) / (2 * w2 * Double(q - p))
                if s <= boundaries[k] { k -= 1 } else { break }
            }
            k += 1
            vertices[k] = q
            boundaries[k] = k == 0 ? -.infinity : s
            boundaries[k + 1] = .infinity
        }
        guard k >= 0 else { return }  // no finite value: the line stays +∞
        var j = 0
        for q in 0..<n {
            while boundaries[j + 1] < Double(q) { j += 1 }
            let d = Double(q - vertices[j])
            line[q * stride] = w2 * d * d + f[vertices[j]]
        }
    }
}
