#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegVolume

/// Where the CRF runs.
public enum CRFMode: Int, Sendable, CaseIterable {
    /// Each transverse slice on its own, as the paper does; slices run in parallel.
    case slice2d = 0
    /// One CRF over the whole volume with 3-D positions in mm.
    case volume3d = 1

    /// The mode's name in model files and on the command line.
    public var name: String { self == .slice2d ? "slice2d" : "volume3d" }

    /// The mode called `name` ("slice2d" or "volume3d"), or nil.
    public init?(name: String) {
        guard let mode = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = mode
    }
}

/// Parameters of `refineWithCRF`. Positions are in mm and grey values in HU, so one
/// setting suits any voxel spacing.
public struct CRFParameters: Sendable, Equatable {
    /// Per slice or over the volume; volume3d by default, the more accurate on real network
    /// outputs (docs/crf.md).
    public var mode: CRFMode = .volume3d
    /// Mean-field iterations; 0 returns the thresholded probability.
    public var iterations = 5
    // μ1 = 10: every search on real network outputs picked μ1 ≥ 10 (the bundled model's on
    // its training cases; each leave-one-out fold's on its own training cases); the other
    // values were picked on degraded manual masks and agree with those searches (docs/crf.md).
    /// μ1, the weight of the bilateral (appearance) kernel.
    public var bilateralWeight = 10.0
    /// μ2, the weight of the spatial (smoothness) kernel.
    public var spatialWeight = 3.0
    /// θα: bilateral kernel's position bandwidth, mm.
    public var thetaAlphaMM = 12.0
    /// θβ: bilateral kernel's grey-value bandwidth, HU.
    public var thetaBetaHU = 15.0
    /// θγ: spatial kernel's position bandwidth, mm.
    public var thetaGammaMM = 1.0
    /// Message normalisation.
    public var normalisation = CRFNormalisation.symmetric
    /// Run the CRF only inside the bounding box (per slice in slice2d) of the voxels whose
    /// probability lies in (uncertainProbability, 1 − uncertainProbability), grown by
    /// `uncertainMarginMM`; elsewhere the mask is the thresholded probability.
    public var restrictToUncertainRegion = true
    /// See `restrictToUncertainRegion`; in [0, 0.5).
    public var uncertainProbability = 0.01
    /// See `restrictToUncertainRegion`; ≥ 0 mm.
    public var uncertainMarginMM = 10.0
    /// Worker threads; 0 = all cores.
    public var threads = 0

    /// Default parameters.
    public init() {}

    /// Throws `invalidArgument` naming the first invalid parameter.
    public func validate() throws {
        func bad(_ name: String, _ value: Any, _ rule: String) -> LiversegError {
            LiversegError.invalidArgument("\(name) \(value) must be \(rule)")
        }
        guard (0...10_000).contains(iterations) else { throw bad("n_iterations", iterations, "in 0...10000") }
        for (name, value) in [("mu1", bilateralWeight), ("mu2", spatialWeight)] where !(Float(value).isFinite && value >= 0) {
            throw bad(name, value, "finite (as a float) and >= 0")
        }
        for (name, value) in [("theta_alpha_mm", thetaAlphaMM), ("theta_beta_hu", thetaBetaHU), ("theta_gamma_mm", thetaGammaMM)]
        where !(value.isFinite && value > 0) {
            throw bad(name, value, "finite and > 0")
        }
        guard uncertainProbability.isFinite, uncertainProbability >= 0, uncertainProbability < 0.5 else {
            throw bad("uncertain_probability", uncertainProbability, "in [0, 0.5)")
        }
        guard uncertainMarginMM.isFinite, uncertainMarginMM >= 0 else {
            throw bad("uncertain_margin_mm", uncertainMarginMM, "finite and >= 0")
        }
        guard (0...4096).contains(threads) else { throw bad("n_threads", threads, "in 0...4096") }
    }
}

extension CRFParameters {
    /// Parameters from a model file's "crf" metadata object, whose keys are the C
    /// field names: mode ("slice2d"/"volume3d"), n_iterations, mu1, mu2, theta_alpha_mm,
    /// theta_beta_hu, theta_gamma_mm, normalisation ("symmetric"/"after"),
    /// uncertain_only (bool), uncertain_probability, uncertain_margin_mm. Missing keys keep
    /// the library defaults; nil or an empty object gives the defaults. Throws
    /// `invalidModel` for an unknown key, a value of the wrong type or an invalid value.
    public init(modelMetadata crf: JSONValue?) throws {
        self.init()
        guard let crf else { return }
        guard let members = crf.objectValue else { throw LiversegError.invalidModel("metadata crf must be an object") }
        func number(_ key: String, _ value: JSONValue) throws -> Double {
            guard let n = value.numberValue else { throw LiversegError.invalidModel("metadata crf.\(key) must be a number") }
            return n
        }
        for (key, value) in members {
            switch key {
            case "mode":
                guard let name = value.stringValue, let m = CRFMode(name: name) else {
                    throw LiversegError.invalidModel("metadata crf.mode must be \"slice2d\" or \"volume3d\"")
                }
                mode = m
            case "normalisation":
                guard let name = value.stringValue, let n = ["symmetric": CRFNormalisation.symmetric, "after": .after][name]
                else {
                    throw LiversegError.invalidModel("metadata crf.normalisation must be \"symmetric\" or \"after\"")
                }
                normalisation = n
            case "n_iterations":
                guard let n = value.intValue else {
                    throw LiversegError.invalidModel("metadata crf.n_iterations must be an integer")
                }
                iterations = n
            case "uncertain_only":
                guard case .bool(let b) = value else {
                    throw LiversegError.invalidModel("metadata crf.uncertain_only must be true or false")
                }
                restrictToUncertainRegion = b
            case "mu1": bilateralWeight = try number(key, value)
            case "mu2": spatialWeight = try number(key, value)
            case "theta_alpha_mm": thetaAlphaMM = try number(key, value)
            case "theta_beta_hu": thetaBetaHU = try number(key, value)
            case "theta_gamma_mm": thetaGammaMM = try number(key, value)
            case "uncertain_probability": uncertainProbability = try number(key, value)
            case "uncertain_margin_mm": uncertainMarginMM = try number(key, value)
            default: throw LiversegError.invalidModel("metadata crf has an unknown key \"\(key)\"")
            }
        }
        do { try validate() } catch LiversegError.invalidArgument(let message) {
            throw LiversegError.invalidModel("metadata crf: \(message)")
        }
    }
}

extension CRFParameters {
    /// The model file's "crf" section for these parameters (the inverse of
    /// `init(modelMetadata:)`; the thread count is not a model property and is left out).
    public var modelMetadata: JSONValue {
        .object([
            ("mode", .string(mode.name)),
            ("n_iterations", .number(Double(iterations))),
            ("mu1", .number(bilateralWeight)), ("mu2", .number(spatialWeight)),
            ("theta_alpha_mm", .number(thetaAlphaMM)), ("theta_beta_hu", .number(thetaBetaHU)),
            ("theta_gamma_mm", .number(thetaGammaMM)),
            ("normalisation", .string(normalisation == .symmetric ? "symmetric" : "after")),
            ("uncertain_only", .bool(restrictToUncertainRegion)),
            ("uncertain_probability", .number(uncertainProbability)),
            ("uncertain_margin_mm", .number(uncertainMarginMM)),
        ])
    }
}

/// A box of voxels [lower, upper) on the volume grid.
struct VoxelBox: Equatable {
    var lower: [Int]
    var upper: [Int]
    var voxelCount: Int { (0..<3).reduce(1) { $0 * (upper[$1] - lower[$1]) } }
}

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
/// In slice2d mode the slices are those across the axis nearest to superior–inferior
/// (from `ijkToRAS`; the third axis without it). Progress is reported with stage
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
        let whole = VoxelBox(lower: [0, 0, 0], upper: size)
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
                        var plane = VoxelBox(lower: [0, 0, 0], upper: size)
                        plane.lower[axis] = s
                        plane.upper[axis] = s + 1
                        do {
                            guard let box = parameters.restrictToUncertainRegion ? problem.uncertainBox(within: plane) : plane
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
        var box = VoxelBox(lower: lower, upper: upper)
        for a in 0..<3 {
            let margin = Int(min(Double(size[a]), (parameters.uncertainMarginMM / volume.spacing[a]).rounded(.up)))
            box.lower[a] = max(region.lower[a], box.lower[a] - margin)
            box.upper[a] = min(region.upper[a], box.upper[a] + margin)
        }
        return box
    }

    /// Runs the CRF on the voxels of `box` with positions along `spatialAxes`, and writes
    /// their labels into the mask. `checkpoint` runs on the calling thread during the
    /// lattice build and the filterings, `afterIteration` after each mean-field update.
    func refine(
        _ box: VoxelBox, spatialAxes: [Int], threads: Int, checkpoint: () throws -> Void,
        afterIteration: (Int) throws -> Void
    ) throws {
        let n = box.voxelCount
        let db = spatialAxes.count + 1
        let bilateral = try Buffer<Float>(count: parameters.bilateralWeight > 0 ? n * db : 0, zeroed: false)
        let local = try Buffer<Float>(count: n, zeroed: false)
        let (b, q) = (bilateral.pointer, local.pointer)
        let extent = (0..<3).map { box.upper[$0] - box.lower[$0] }
        let withFeatures = parameters.bilateralWeight > 0
        // Bilateral features: position in mm / θα along each spatial axis, then HU / θβ.
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
                        q[point] = probability[row + i]
                        if withFeatures {
                            let hu = data[row + i].hounsfield  // finite: the volume is validated
                            let f = b + point * db
                            if slots[0] >= 0 { f[slots[0]] = Float(i) * step[0] }
                            if slots[1] >= 0 { f[slots[1]] = Float(j) * step[1] }
                            if slots[2] >= 0 { f[slots[2]] = Float(k) * step[2] }
                            f[db - 1] = hu * inverseBeta
                        }
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
        var kernels: [CRFKernel] = []
        if withFeatures {
            let lattice = try PermutohedralLattice(
                features: b, count: n, dimension: db,
                kernelName: "bilateral kernel (theta_alpha_mm, theta_beta_hu)", threads: threads,
                checkpoint: checkpoint)
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
