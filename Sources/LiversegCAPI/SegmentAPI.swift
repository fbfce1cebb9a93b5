import CLiverseg
import LiversegSupport
import LiversegVolume
import LiversegNetwork
import LiversegCRF
import LiversegPipeline

/// struct_size of each released liverseg_segment_params layout, oldest first.
private let segmentParamsSizes = [MemoryLayout<lvs_segment_params_0_1>.size, MemoryLayout<liverseg_segment_params>.size]

/// The current layout's defaults.
private func defaultSegmentParams() -> liverseg_segment_params {
    let core = SegmentationOptions()
    var p = liverseg_segment_params()
    p.struct_size = MemoryLayout<liverseg_segment_params>.size
    p.n_threads = Int32(core.threads)
    p.max_tile_voxels = 0
    p.threshold = core.threshold
    p.crf = core.crf.isOn ? 1 : 0
    p.crf_params = nil
    p.progress = nil
    p.progress_user_data = nil
    p.postprocess = core.postProcessing.rawValue
    return p
}

@_cdecl("liverseg_segment_params_init")
public func liverseg_segment_params_init(_ params: UnsafeMutablePointer<liverseg_segment_params>?, _ size: Int) -> liverseg_status
{
    boundary("liverseg_segment_params_init") {
        try initialiseParams(params, size: size, defaults: defaultSegmentParams(), released: segmentParamsSizes, "params")
    }
}

/// 0.1's exported default-params function, for programs compiled against 0.1: it fills
/// the 0.1 layout only (a larger struct returned by value would overrun their stack).
/// Newer headers define liverseg_segment_default_params inline over the init function.
@_cdecl("liverseg_segment_default_params")
public func segmentDefaultParams01() -> lvs_segment_params_0_1 {
    var old = lvs_segment_params_0_1()
    var current = defaultSegmentParams()
    current.struct_size = MemoryLayout<lvs_segment_params_0_1>.size
    withUnsafeMutableBytes(of: &old) { o in
        withUnsafeBytes(of: &current) { o.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(o.count))) }
    }
    return old
}

/// Checks a C volume descriptor and lends it to `body` as a core `VolumeInput` (converted
/// to float32 for types other than int16, int32 and float32), validated.
func withVolumeInput<R>(_ volume: UnsafePointer<liverseg_volume>?, _ body: (VolumeInput) throws -> R) throws -> R {
    let v = try required(volume, "volume").pointee
    let data = try required(v.data, "volume->data")
    let dims = try (0..<3).map { i -> Int in
        let d = withUnsafeBytes(of: v.dims) { $0.load(fromByteOffset: i * MemoryLayout<Int>.size, as: UInt.self) }
        return try checkedSize(d, "volume->dims[\(i)]")
    }
    let type = try voxelType(v.dtype, "volume->dtype")
    let spacing = [v.spacing.0, v.spacing.1, v.spacing.2]
    let matrix = v.ijk_to_ras.map { m in (0..<16).map { m[$0] } }
    return try VolumeInput.lending(
        data, type: type, size: GridSize(x: dims[0], y: dims[1], z: dims[2]),
        spacing: spacing, ijkToRAS: matrix
    ) { input in
        try input.validate()
        return try body(input)
    }
}

/// Core options from C params (NULL: defaults), validated; without crf_params the CRF uses
/// the model file's parameters.
private func segmentationOptions(
    _ params: UnsafePointer<liverseg_segment_params>?
) throws -> (SegmentationOptions, ProgressHandler?) {
    let p = try versionedParams(params, defaults: defaultSegmentParams(), released: segmentParamsSizes, "params")
    var options = SegmentationOptions()
    guard p.n_threads >= 0, p.n_threads <= 4096 else {
        throw LiversegError.invalidArgument("params->n_threads \(p.n_threads) must be in 0...4096")
    }
    options.threads = Int(p.n_threads)
    if p.max_tile_voxels != 0 {
        options.maxTileVoxels = try checkedSize(UInt(bitPattern: p.max_tile_voxels), "params->max_tile_voxels")
    }
    guard p.threshold.isFinite, p.threshold > 0, p.threshold < 1 else {
        throw LiversegError.invalidArgument("params->threshold \(p.threshold) must be in (0, 1)")
    }
    options.threshold = p.threshold
    let steps = MaskPostProcessing(rawValue: p.postprocess)
    guard MaskPostProcessing.all.isSuperset(of: steps) else {
        throw LiversegError.invalidArgument("params->postprocess \(p.postprocess) has bits outside LIVERSEG_POSTPROCESS_ALL")
    }
    options.postProcessing = steps
    if p.crf == 0 {
        options.crf = .off
    } else if let crf = p.crf_params {
        options.crf = .parameters(try crfParameters(UnsafeRawPointer(crf).assumingMemoryBound(to: liverseg_crf_params.self)).0)
    } else {
        options.crf = .modelFile
    }
    var handler: ProgressHandler? = nil
    if let callback = p.progress {
        let userData = p.progress_user_data
        handler = { fraction, stage in callback(fraction, liverseg_stage(UInt32(stage.rawValue)), userData) == 0 }
    }
    return (options, handler)
}

@_cdecl("liverseg_segment")
public func liverseg_segment(
    _ model: OpaquePointer?, _ volume: UnsafePointer<liverseg_volume>?,
    _ params: UnsafePointer<liverseg_segment_params>?,
    _ outMask: UnsafeMutablePointer<UInt8>?, _ outProbability: UnsafeMutablePointer<Float>?
) -> liverseg_status {
    boundary("liverseg_segment") {
        let model = try handle(model).model
        let mask = try required(outMask, "out_mask")
        let (options, progress) = try segmentationOptions(params)
        try withVolumeInput(volume) { input in
            try model.segment(input, options: options, mask: mask, probability: outProbability, progress: progress)
        }
    }
}

/// A network input from C: dims must be positive multiples of 4 and values finite.
private func networkInput(_ input: UnsafePointer<Float>?, _ dims: UnsafePointer<Int>?) throws -> Tensor<Float> {
    let input = try required(input, "input")
    let dims = try required(dims, "dims")
    let extents = try (0..<3).map { try checkedSize(UInt(bitPattern: dims[$0]), "dims[\($0)]") }
    for (i, e) in extents.enumerated() where e < 4 || e % 4 != 0 {
        throw LiversegError.invalidArgument("dims[\(i)] = \(e) must be a positive multiple of 4")
    }
    let count = try checkedProduct(extents + [64], what: "dims") / 64
    if let bad = (0..<count).first(where: { !input[$0].isFinite }) {
        throw LiversegError.invalidArgument("input value at flat index \(bad) is not finite")
    }
    let tensor = try Tensor<Float>(channels: 1, size: GridSize(x: extents[0], y: extents[1], z: extents[2]), zeroed: false)
    tensor.storage.pointer.update(from: input, count: count)
    return tensor
}

private func threadCount(_ n: Int32) throws -> Int {
    guard n >= 0 else { throw LiversegError.invalidArgument("n_threads \(n) must be >= 0") }
    return resolvedThreadCount(Int(n))
}

@_cdecl("liverseg_network_forward")
public func liverseg_network_forward(
    _ model: OpaquePointer?, _ input: UnsafePointer<Float>?, _ dims: UnsafePointer<Int>?,
    _ nThreads: Int32, _ outMain: UnsafeMutablePointer<Float>?,
    _ outBranch1: UnsafeMutablePointer<Float>?, _ outBranch2: UnsafeMutablePointer<Float>?
) -> liverseg_status {
    boundary("liverseg_network_forward") {
        let model = try handle(model).model
        let tensor = try networkInput(input, dims)
        let count = tensor.size.voxelCount
        let outputs = try model.network.forward(tensor, threads: try threadCount(nThreads))
        outMain?.update(from: outputs.main.pointer, count: count)
        outBranch1?.update(from: outputs.branch1.pointer, count: count)
        outBranch2?.update(from: outputs.branch2.pointer, count: count)
    }
}

@_cdecl("liverseg_network_loss_gradient")
public func liverseg_network_loss_gradient(
    _ model: OpaquePointer?, _ input: UnsafePointer<Float>?, _ dims: UnsafePointer<Int>?,
    _ labels: UnsafePointer<UInt8>?, _ eta1: Double, _ eta2: Double, _ nThreads: Int32,
    _ outLosses: UnsafeMutablePointer<Double>?,
    _ outGradient: UnsafeMutablePointer<Float>?
) -> liverseg_status {
    boundary("liverseg_network_loss_gradient") {
        let model = try handle(model).model
        let tensor = try networkInput(input, dims)
        let labels = try required(labels, "labels")
        let losses = try required(outLosses, "out_losses")
        for (name, eta) in [("eta1", eta1), ("eta2", eta2)] where !(eta.isFinite && eta >= 0) {
            throw LiversegError.invalidArgument("\(name) \(eta) must be finite and >= 0")
        }
        let classes = model.architecture.classes
        if let bad = (0..<tensor.size.voxelCount).first(where: { Int(labels[$0]) >= classes }) {
            throw LiversegError.invalidArgument("labels[\(bad)] = \(labels[bad]) is not a class index below \(classes)")
        }
        let (loss, gradients) = try model.network.lossAndGradients(
            tensor, labels: labels, eta: (Float(eta1), Float(eta2)),
            threads: try threadCount(nThreads))
        (losses[0], losses[1], losses[2], losses[3]) = (
            Double(loss.total), Double(loss.main), Double(loss.branch1), Double(loss.branch2)
        )
        if let out = outGradient { out.update(from: gradients, count: gradients.count) }
    }
}

@_cdecl("liverseg_model_grid_dims")
public func liverseg_model_grid_dims(
    _ model: OpaquePointer?, _ volume: UnsafePointer<liverseg_volume>?,
    _ outDims: UnsafeMutablePointer<Int>?
) -> liverseg_status {
    boundary("liverseg_model_grid_dims") {
        let model = try handle(model).model
        let out = try required(outDims, "out_dims")
        let grid = try withVolumeInput(volume) { try ModelGrid(volume: $0, preprocessing: model.preprocessing) }
        (out[0], out[1], out[2]) = (grid.size.x, grid.size.y, grid.size.z)
    }
}

@_cdecl("liverseg_preprocess")
public func liverseg_preprocess(
    _ model: OpaquePointer?, _ volume: UnsafePointer<liverseg_volume>?, _ nThreads: Int32,
    _ out: UnsafeMutablePointer<Float>?, _ outCount: Int
) -> liverseg_status {
    boundary("liverseg_preprocess") {
        let model = try handle(model).model
        let out = try required(out, "out")
        guard nThreads >= 0 else { throw LiversegError.invalidArgument("n_threads \(nThreads) must be >= 0") }
        try withVolumeInput(volume) { input in
            let grid = try ModelGrid(volume: input, preprocessing: model.preprocessing)
            guard outCount == grid.size.voxelCount else {
                throw LiversegError.invalidArgument(
                    "out_count \(UInt(bitPattern: outCount)) but the model grid \(grid.size) has \(grid.size.voxelCount) voxels")
            }
            try grid.preprocess(input, model.preprocessing, into: out, threads: resolvedThreadCount(Int(nThreads)))
        }
    }
}
