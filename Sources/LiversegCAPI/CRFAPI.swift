import CLiverseg
import LiversegSupport
import LiversegVolume
import LiversegCRF

/// struct_size of each released liverseg_crf_params layout, oldest first.
private let crfParamsSizes = [MemoryLayout<liverseg_crf_params>.size]

@_cdecl("liverseg_crf_params_init")
public func liverseg_crf_params_init(_ params: UnsafeMutablePointer<liverseg_crf_params>?, _ size: Int) -> liverseg_status {
    boundary("liverseg_crf_params_init") {
        try initialiseParams(params, size: size, defaults: crfDefaultParams01(), released: crfParamsSizes, "params")
    }
}

/// The defaults; also 0.1's exported liverseg_crf_default_params (the layout is unchanged
/// since 0.1, so returning it by value fits every caller).
@_cdecl("liverseg_crf_default_params")
public func crfDefaultParams01() -> liverseg_crf_params {
    let core = CRFParameters()
    var p = liverseg_crf_params()
    p.struct_size = MemoryLayout<liverseg_crf_params>.size
    p.mode = liverseg_crf_mode(UInt32(core.mode.rawValue))
    p.n_iterations = Int32(core.iterations)
    p.mu1 = core.bilateralWeight
    p.mu2 = core.spatialWeight
    p.theta_alpha_mm = core.thetaAlphaMM
    p.theta_beta_hu = core.thetaBetaHU
    p.theta_gamma_mm = core.thetaGammaMM
    p.normalisation = liverseg_crf_normalisation(UInt32(core.normalisation.rawValue))
    p.uncertain_only = core.restrictToUncertainRegion ? 1 : 0
    p.uncertain_probability = core.uncertainProbability
    p.uncertain_margin_mm = core.uncertainMarginMM
    p.n_threads = Int32(core.threads)
    p.progress = nil
    p.progress_user_data = nil
    return p
}

/// Core CRF parameters and progress handler from C params (NULL: defaults), validated.
func crfParameters(_ params: UnsafePointer<liverseg_crf_params>?) throws -> (CRFParameters, ProgressHandler?) {
    let p = try versionedParams(params, defaults: crfDefaultParams01(), released: crfParamsSizes, "params")
    var core = CRFParameters()
    guard let mode = CRFMode(rawValue: Int(p.mode.rawValue)) else {
        throw LiversegError.invalidArgument("params->mode \(p.mode.rawValue) is not a liverseg_crf_mode")
    }
    guard let normalisation = CRFNormalisation(rawValue: Int(p.normalisation.rawValue)) else {
        throw LiversegError.invalidArgument(
            "params->normalisation \(p.normalisation.rawValue) is not a liverseg_crf_normalisation")
    }
    core.mode = mode
    core.normalisation = normalisation
    core.iterations = Int(p.n_iterations)
    core.bilateralWeight = p.mu1
    core.spatialWeight = p.mu2
    core.thetaAlphaMM = p.theta_alpha_mm
    core.thetaBetaHU = p.theta_beta_hu
    core.thetaGammaMM = p.theta_gamma_mm
    core.restrictToUncertainRegion = p.uncertain_only != 0
    core.uncertainProbability = p.uncertain_probability
    core.uncertainMarginMM = p.uncertain_margin_mm
    core.threads = Int(p.n_threads)
    do { try core.validate() } catch LiversegError.invalidArgument(let message) {
        throw LiversegError.invalidArgument("params->\(message)")
    }
    var handler: ProgressHandler? = nil
    if let callback = p.progress {
        let userData = p.progress_user_data
        handler = { fraction, stage in callback(fraction, liverseg_stage(UInt32(stage.rawValue)), userData) == 0 }
    }
    return (core, handler)
}

@_cdecl("liverseg_refine_crf")
public func liverseg_refine_crf(
    _ ct: UnsafePointer<liverseg_volume>?, _ probability: UnsafePointer<Float>?,
    _ params: UnsafePointer<liverseg_crf_params>?, _ outMask: UnsafeMutablePointer<UInt8>?
) -> liverseg_status {
    boundary("liverseg_refine_crf") {
        let probability = try required(probability, "probability")
        let mask = try required(outMask, "out_mask")
        let (parameters, progress) = try crfParameters(params)
        try withVolumeInput(ct) { input in
            try refineWithCRF(input, probability: probability, parameters: parameters, mask: mask, progress: progress)
        }
    }
}
