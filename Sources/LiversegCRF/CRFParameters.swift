import LiversegSupport

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
