#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport

/// A Gaussian kernel's filtering over the CRF's points: out_i = Σ_j k(i, j) in_j, the
/// j = i term included (k(i, i) = 1 for the exact filters, ≈ 1 for the lattice).
/// `checkpoint` runs on the calling thread between the passes of a filtering and may throw
/// (a cancellation) to stop it.
public protocol GaussianKernelFilter: AnyObject {
    /// Filters one value per point; `input` and `output` must not overlap.
    func apply(
        _ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, threads: Int,
        checkpoint: () throws -> Void) throws
    /// Writes the kernel's row sums D_i = Σ_j k(i, j), the filter of all ones.
    func rowSums(into output: UnsafeMutablePointer<Float>, count: Int, threads: Int, checkpoint: () throws -> Void) throws
}

extension GaussianKernelFilter {
    /// Filters a buffer of `count` ones.
    public func rowSums(
        into output: UnsafeMutablePointer<Float>, count: Int, threads: Int,
        checkpoint: () throws -> Void
    ) throws {
        let ones = try filledBuffer(Float(1), count: count)
        try apply(ones.pointer, into: output, threads: threads, checkpoint: checkpoint)
    }

    /// `apply` without checkpoints.
    public func apply(_ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, threads: Int) throws {
        try apply(input, into: output, threads: threads) {}
    }

    /// `rowSums` without checkpoints.
    public func rowSums(into output: UnsafeMutablePointer<Float>, count: Int, threads: Int) throws {
        try rowSums(into: output, count: count, threads: threads) {}
    }
}

extension PermutohedralLattice: GaussianKernelFilter {
    /// One-channel `filter`.
    public func apply(
        _ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, threads: Int,
        checkpoint: () throws -> Void
    ) throws {
        try filter(input, channels: 1, into: output, threads: threads, checkpoint: checkpoint)
    }
}

/// The spatial kernel exp(−|s_i − s_j|²/2θ²) over every voxel of a box, x fastest.
///
/// Its features are grid positions, so the Gaussian factorises over the axes and is
/// computed exactly (no lattice) by 1-D convolutions truncated at 4σ, where the dropped
/// tail weighs < 4·10⁻⁴ of the centre; voxels outside the box do not take part, as in a
/// dense CRF over the box's points. Cost O(N·θ/spacing) per filtering, vectorised along x.
public final class GridGaussianFilter: GaussianKernelFilter {
    /// Box extents along x, y, z.
    public let extent: [Int]
    /// Per axis, the weights for offsets 0...radius (empty for an axis left alone).
    private let taps: [[Float]]
    private let scratch: Buffer<Float>

    /// A filter over a box of `extent` voxels with bandwidth `sigmaVoxels[a]` along axis a
    /// (θ divided by the spacing); axes of extent 1 are skipped.
    public init(extent: [Int], sigmaVoxels: [Double]) throws {
        guard extent.count == 3, sigmaVoxels.count == 3, extent.allSatisfy({ $0 >= 1 }),
            sigmaVoxels.allSatisfy({ $0.isFinite && $0 > 0 })
        else {
            throw LiversegError.invalidArgument("spatial kernel: extent \(extent) and bandwidths \(sigmaVoxels) must be positive")
        }
        self.extent = extent
        taps = (0..<3).map { a in
            guard extent[a] > 1 else { return [] }
            let radius = Int(min(Double(extent[a] - 1), (4 * sigmaVoxels[a]).rounded(.up)))
            return (0...radius).map { Float(exp(-Double($0 * $0) / (2 * sigmaVoxels[a] * sigmaVoxels[a]))) }
        }
        scratch = try Buffer(count: try checkedProduct(extent, what: "spatial kernel box"), zeroed: false)
    }

    /// The row sums in closed form: the kernel is a product over the axes, so D_i is the
    /// product of each axis's taps that fall inside the box — one multiply per voxel
    /// instead of a filtering. `count` must be the box's voxel count.
    public func rowSums(
        into output: UnsafeMutablePointer<Float>, count: Int, threads: Int,
        checkpoint: () throws -> Void
    ) throws {
        let (nx, ny, nz) = (extent[0], extent[1], extent[2])
        guard count == nx * ny * nz else {
            throw LiversegError.invalidArgument("spatial kernel: \(count) row sums for a box of \(nx * ny * nz) voxels")
        }
        let sums = (0..<3).map { a in
            (0..<extent[a]).map { position -> Float in
                // An axis with taps has extent > 1, so radius ≥ 1.
                guard !taps[a].isEmpty else { return 1 }
                let w = taps[a], radius = w.count - 1
                var total = Double(w[0])
                for t in 1...radius {
                    if position + t < extent[a] { total += Double(w[t]) }
                    if position - t >= 0 { total += Double(w[t]) }
                }
                return Float(total)
            }
        }
        nonisolated(unsafe) let out = output
        let (sx, sy, sz) = (sums[0], sums[1], sums[2])
        parallelChunks(ny * nz, threads: threads) { _, rows in
            for row in rows {
                let yz = sy[row % ny] * sz[row / ny], line = out + row * nx
                for i in 0..<nx { line[i] = sx[i] * yz }
            }
        }
    }

    /// Filters one value per box voxel (x fastest); `input` and `output` must not overlap.
    public func apply(
        _ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, threads: Int,
        checkpoint: () throws -> Void
    ) throws {
        let axes = (0..<3).filter { !taps[$0].isEmpty }
        let n = extent[0] * extent[1] * extent[2]
        guard !axes.isEmpty else { output.update(from: input, count: n); return }
        // Alternate between the scratch and `output` so that the last pass lands in `output`.
        var source = input
        for (pass, axis) in axes.enumerated() {
            let destination = (axes.count - 1 - pass) % 2 == 0 ? output : scratch.pointer
            try convolve(source, into: destination, axis: axis, threads: threads, checkpoint: checkpoint)
            source = UnsafePointer(destination)
        }
    }

    /// One 1-D pass along `axis`, written as whole-row multiply–adds so it vectorises.
    private func convolve(
        _ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, axis: Int, threads: Int,
        checkpoint: () throws -> Void
    ) throws {
        let (nx, ny, nz) = (extent[0], extent[1], extent[2])
        let w = taps[axis], radius = w.count - 1
        nonisolated(unsafe) let src = input, dst = output
        // Rows of x; along y and z the neighbour rows are `stride` floats apart.
        let stride = axis == 1 ? nx : nx * ny
        let length = axis == 1 ? ny : nz
        try w.withUnsafeBufferPointer { wp in
            nonisolated(unsafe) let wt = wp
            try parallelRounds(ny * nz, threads: threads, checkpoint: { _ in try checkpoint() }) { _, rows in
                for row in rows {
                    let (j, k) = (row % ny, row / ny)
                    let out = dst + row * nx, centre = src + row * nx
                    if axis == 0 {
                        // Shifted row pointers instead of i ± t: no per-element overflow
                        // check, so the loops vectorise (the checks cost a third of this
                        // filter's time; tools/bench_checks.py, perf).
                        for i in 0..<nx { out[i] = wt[0] * centre[i] }
                        for t in 1...radius {
                            let wv = wt[t], ahead = centre + t, behind = centre - t
                            for i in 0..<(nx - t) { out[i] += wv * ahead[i] }
                            for i in t..<nx { out[i] += wv * behind[i] }
                        }
                    } else {
                        let position = axis == 1 ? j : k
                        for i in 0..<nx { out[i] = wt[0] * centre[i] }
                        for t in 1...radius {
                            let wv = wt[t]
                            if position + t < length {
                                let other = centre + t * stride
                                for i in 0..<nx { out[i] += wv * other[i] }
                            }
                            if position - t >= 0 {
                                let other = centre - t * stride
                                for i in 0..<nx { out[i] += wv * other[i] }
                            }
                        }
                    }
                }
            }
        }
    }
}
