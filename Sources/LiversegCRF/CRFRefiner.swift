#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegVolume

/// Hands out indices to worker threads one at a time, so slices of unequal cost balance.
private final class IndexDispenser: @unchecked Sendable {
    private var next: Int
    private let end: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init(_ range: Range<Int>) { next = range.lowerBound; end = range.upperBound; pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
    func take() -> Int? {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        guard next < end else { return nil }
        next += 1
        return next - 1
    }
}

/// Refines a liver probability on a CT volume's own grid into a mask with the fully
/// connected CRF of paper §2.3: unary −log p̂, Potts compatibility, a bilateral kernel on
/// (position/θα, HU/θβ) with weight μ1 and a spatial kernel on position/θγ with weight μ2.
///
/// `probability` holds one value in [0, 1] per voxel (x fastest); `mask` receives 0/1.
/// (To refine part of a volume, crop it: `VolumeInput.withCropped`.) In slice2d mode the slices are those
/// across the axis nearest to superior–inferior (from `ijkToRAS`; the third axis without it). Progress is reported with stage
/// `.crf` on the calling thread. Deterministic whatever the thread count.
public func refineWithCRF(
    _ volume: VolumeInput, probability: [Float], parameters: CRFParameters, progress: ProgressHandler? = nil
) throws -> [UInt8] {
    guard probability.count == volume.size.voxelCount else {
        throw LiversegError.invalidArgument(
            "probability has \(probability.count) values but the volume \(volume.size) has \(volume.size.voxelCount) voxels")
    }
    var mask = [UInt8](repeating: 0, count: probability.count)
    try probability.withUnsafeBufferPointer { p in
        try mask.withUnsafeMutableBufferPointer { m in
            try refineWithCRF(
                volume, probability: p.baseAddress!, parameters: parameters, mask: m.baseAddress!, progress: progress)
        }
    }
    return mask
}

/// `refineWithCRF` between borrowed buffers of volume.size voxels (the C API's and the
/// pipeline's, without copies).
package func refineWithCRF(
    _ volume: VolumeInput, probability: UnsafePointer<Float>, parameters: CRFParameters,
    mask: UnsafeMutablePointer<UInt8>, progress: ProgressHandler? = nil
) throws {
    try parameters.validate()
    try volume.validate()
    let whole = VoxelBox(volume.size)
    func report(_ fraction: Double) throws {
        if let progress, !progress(min(1, fraction), .crf) { throw LiversegError.cancelled }
    }
    let size = [volume.size.x, volume.size.y, volume.size.z]
    let voxels = volume.size.voxelCount
    let threads = resolvedThreadCount(parameters.threads)
    try report(0)

    // Reject bad probabilities (reporting the lowest bad index), and threshold everything:
    // the CRF then overwrites the voxels it refines.
    var firstBad = [Int](repeating: Int.max, count: threads)
    nonisolated(unsafe) let p = probability, out = mask
    firstBad.withUnsafeMutableBufferPointer { firstBad in
        nonisolated(unsafe) let bad = firstBad
        parallelChunks(voxels, threads: threads) { worker, range in
            for i in range {
                let v = p[i]
                if !(v >= 0 && v <= 1) { bad[worker] = min(bad[worker], i) }
                out[i] = v >= 0.5 ? 1 : 0
            }
        }
    }
    if let bad = firstBad.min(), bad != Int.max {
        throw LiversegError.invalidArgument("probability[\(bad)] = \(probability[bad]) is not in [0, 1]")
    }
    let problem = CRFProblem(volume: volume, size: size, probability: probability, parameters: parameters, mask: mask)

    switch parameters.mode {
    case .volume3d:
        if let box = parameters.restrictToUncertainRegion ? problem.uncertainBox(within: whole) : whole {
            Log.write(.debug, "CRF volume3d on box \(box.lower)..<\(box.upper) (\(box.voxelCount) voxels)")
            // Progress moves per iteration; between, checkpoints repeat the last fraction.
            var fraction = 0.0
            try problem.refine(box, spatialAxes: [0, 1, 2], threads: threads, checkpoint: { try report(fraction) }) { t in
                fraction = Double(t) / Double(max(1, parameters.iterations))
                try report(fraction)
            }
        }
    case .slice2d:
        let axis = transverseAxis(volume)
        let inPlane = [0, 1, 2].filter { $0 != axis }
        let slices = size[axis]
        // Batches, sized from the time the previous ones took, bound how long the caller
        // waits for progress and cancellation.
        var sizer = RoundSizer(minimum: progress == nil ? slices : threads)
        var first = 0
        while first < slices {
            let last = min(slices, first + sizer.size)
            let began = monotonicSeconds()
            var errors = [LiversegError?](repeating: nil, count: last - first)
            let dispenser = IndexDispenser(first..<last)
            errors.withUnsafeMutableBufferPointer { errors in
                nonisolated(unsafe) let errors = errors
                parallelChunks(threads, threads: threads) { _, _ in
                    while let s = dispenser.take() {
                        var slice = whole
                        slice.lower[axis] = s
                        slice.upper[axis] = s + 1
                        do {
                            guard let box = parameters.restrictToUncertainRegion ? problem.uncertainBox(within: slice) : slice
                            else { continue }
                            try problem.refine(box, spatialAxes: inPlane, threads: 1, checkpoint: {}) { _ in }
                        } catch let error as LiversegError {
                            errors[s - first] = error
                        } catch {
                            errors[s - first] = .internalError("CRF slice \(s): \(error)")
                        }
                    }
                }
            }
            if let error = errors.lazy.compactMap({ $0 }).first { throw error }
            sizer.finished(seconds: monotonicSeconds() - began)
            try report(Double(last) / Double(slices))
            first = last
        }
    }
    try report(1)
}

/// The voxel axis closest to superior–inferior, across which slices are transverse.
func transverseAxis(_ volume: VolumeInput) -> Int {
    guard let m = volume.ijkToRAS, m.count == 16 else { return 2 }
    // Column a of the matrix is axis a's direction; row 2 is its S component.
    return (0..<3).max { abs(m[8 + $0]) / volume.spacing[$0] < abs(m[8 + $1]) / volume.spacing[$1] } ?? 2
}

/// One refinement request: the borrowed volume, probability and mask, and the parameters.
private struct CRFProblem: @unchecked Sendable {
    let volume: VolumeInput
    let size: [Int]
    let probability: UnsafePointer<Float>
    let parameters: CRFParameters
    let mask: UnsafeMutablePointer<UInt8>

    /// The bounding box of the uncertain voxels inside `region`, grown by the margin and
    /// clipped to `region`; nil when no voxel there is uncertain.
    func uncertainBox(within region: VoxelBox) -> VoxelBox? {
        let low = Float(parameters.uncertainProbability), high = 1 - low
        var (x0, y0, z0) = (Int.max, Int.max, Int.max), (x1, y1, z1) = (Int.min, Int.min, Int.min)
        for k in region.lower[2]..<region.upper[2] {
            for j in region.lower[1]..<region.upper[1] {
                let row = (k * size[1] + j) * size[0]
                for i in region.lower[0]..<region.upper[0] {
                    let v = probability[row + i]
                    if v > low, v < high {
                        (x0, y0, z0) = (min(x0, i), min(y0, j), min(z0, k))
                        (x1, y1, z1) = (max(x1, i + 1), max(y1, j + 1), max(z1, k + 1))
                    }
                }
            }
        }
        let lower = [x0, y0, z0], upper = [x1, y1, z1]
        guard (0..<3).allSatisfy({ lower[$0] < upper[$0] }) else { return nil }
        return VoxelBox(lower: lower, upper: upper).grown(
            byMM: parameters.uncertainMarginMM, spacing: volume.spacing, within: region)
    }

    /// The bilateral kernel's lattice over the voxels of `box`, x fastest. Its features —
    /// position in mm / θα along each spatial axis, then HU / θβ — live only while it is
    /// built (16 bytes per point in 3-D).
    private func bilateralLattice(
        _ box: VoxelBox, spatialAxes: [Int], threads: Int, checkpoint: () throws -> Void
    ) throws -> PermutohedralLattice {
        let n = box.voxelCount, db = spatialAxes.count + 1
        let extent = (0..<3).map { box.upper[$0] - box.lower[$0] }
        let features = try Buffer<Float>(count: n * db, zeroed: false)
        let b = features.pointer
        let step = (0..<3).map { Float(volume.spacing[$0] / parameters.thetaAlphaMM) }
        let inverseBeta = Float(1 / parameters.thetaBetaHU)
        let slots = (0..<3).map { a in spatialAxes.firstIndex(of: a) ?? -1 }
        func gather<T: HounsfieldVoxel>(_ data: UnsafePointer<T>) throws {
            var point = 0
            for k in 0..<extent[2] {
                try checkpoint()
                for j in 0..<extent[1] {
                    let row = ((box.lower[2] + k) * size[1] + box.lower[1] + j) * size[0] + box.lower[0]
                    for i in 0..<extent[0] {
                        let hu = data[row + i].hounsfield  // finite: the volume is validated
                        let f = b + point * db
                        if slots[0] >= 0 { f[slots[0]] = Float(i) * step[0] }
                        if slots[1] >= 0 { f[slots[1]] = Float(j) * step[1] }
                        if slots[2] >= 0 { f[slots[2]] = Float(k) * step[2] }
                        f[db - 1] = hu * inverseBeta
                        point += 1
                    }
                }
            }
        }
        switch volume.voxels {
        case .int16(let data): try gather(data)
        case .int32(let data): try gather(data)
        case .float32(let data): try gather(data)
        }
        return try PermutohedralLattice(
            features: b, count: n, dimension: db, kernelName: "bilateral kernel (theta_alpha_mm, theta_beta_hu)",
            threads: threads, checkpoint: checkpoint)
    }

    /// Runs the CRF on the voxels of `box` with positions along `spatialAxes`, and writes
    /// their labels into the mask. `checkpoint` runs on the calling thread during the
    /// lattice build and the filterings, `afterIteration` after each mean-field update.
    func refine(
        _ box: VoxelBox, spatialAxes: [Int], threads: Int, checkpoint: () throws -> Void,
        afterIteration: (Int) throws -> Void
    ) throws {
        let n = box.voxelCount
        let extent = (0..<3).map { box.upper[$0] - box.lower[$0] }
        let local = try Buffer<Float>(count: n, zeroed: false)
        let q = local.pointer
        box.crop(probability, size: GridSize(x: size[0], y: size[1], z: size[2]), into: q)
        try checkpoint()
        var kernels: [CRFKernel] = []
        if parameters.bilateralWeight > 0 {
            let lattice = try bilateralLattice(box, spatialAxes: spatialAxes, threads: threads, checkpoint: checkpoint)
            kernels.append(CRFKernel(filter: lattice, weight: Float(parameters.bilateralWeight)))
        }
        if parameters.spatialWeight > 0 {
            let sigma = (0..<3).map { parameters.thetaGammaMM / volume.spacing[$0] }
            kernels.append(
                CRFKernel(
                    filter: try GridGaussianFilter(extent: extent, sigmaVoxels: sigma), weight: Float(parameters.spatialWeight)))
        }
        let crf = try DenseCRF(
            count: n, kernels: kernels, normalisation: parameters.normalisation, threads: threads,
            checkpoint: checkpoint)
        try crf.infer(
            probability: q, iterations: parameters.iterations, threads: threads, into: q,
            afterIteration: afterIteration, checkpoint: checkpoint)
        var point = 0
        for k in 0..<extent[2] {
            try checkpoint()
            for j in 0..<extent[1] {
                let row = ((box.lower[2] + k) * size[1] + box.lower[1] + j) * size[0] + box.lower[0]
                for i in 0..<extent[0] {
                    mask[row + i] = q[point] >= 0.5 ? 1 : 0
                    point += 1
                }
            }
        }
    }
}
