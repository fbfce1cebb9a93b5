import CLiverseg
import LiversegSupport
import LiversegPipeline

@_cdecl("liverseg_status_name")
public func liverseg_status_name(_ status: liverseg_status) -> UnsafePointer<CChar> {
    let name: StaticString
    switch status {
    case LIVERSEG_OK: name = "LIVERSEG_OK"
    case LIVERSEG_INVALID_ARGUMENT: name = "LIVERSEG_INVALID_ARGUMENT"
    case LIVERSEG_IO_ERROR: name = "LIVERSEG_IO_ERROR"
    case LIVERSEG_INVALID_MODEL: name = "LIVERSEG_INVALID_MODEL"
    case LIVERSEG_UNSUPPORTED: name = "LIVERSEG_UNSUPPORTED"
    case LIVERSEG_OUT_OF_MEMORY: name = "LIVERSEG_OUT_OF_MEMORY"
    case LIVERSEG_CANCELLED: name = "LIVERSEG_CANCELLED"
    case LIVERSEG_INTERNAL_ERROR: name = "LIVERSEG_INTERNAL_ERROR"
    default: name = "unknown status"
    }
    return UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("liverseg_set_log_callback")
public func liverseg_set_log_callback(
    _ callback: liverseg_log_callback?, _ minLevel: liverseg_log_level,
    _ userData: UnsafeMutableRawPointer?
) {
    guard let callback else { Log.setHandler(nil, level: .error); return }
    let level = LogLevel(rawValue: Int(minLevel.rawValue)) ?? .info
    nonisolated(unsafe) let userData = userData
    Log.setHandler(
        { level, message in
            message.withCString { callback(liverseg_log_level(UInt32(level.rawValue)), $0, userData) }
        }, level: level)
}

@_cdecl("liverseg_model_load_file")
public func liverseg_model_load_file(
    _ path: UnsafePointer<CChar>?, _ outModel: UnsafeMutablePointer<OpaquePointer?>?
) -> liverseg_status {
    outModel?.pointee = nil
    return boundary("liverseg_model_load_file") {
        let out = try required(outModel, "out_model")
        let path = String(cString: try required(path, "path"))
        do {
            out.pointee = makeHandle(try Model(contentsOfFile: path))
        } catch let error as LiversegError {
            // Name the file in model errors; I/O errors already carry the path.
            if case .invalidModel(let m) = error { throw LiversegError.invalidModel("\(path): \(m)") }
            if case .unsupported(let m) = error { throw LiversegError.unsupported("\(path): \(m)") }
            throw error
        }
    }
}

@_cdecl("liverseg_model_load_memory")
public func liverseg_model_load_memory(
    _ data: UnsafeRawPointer?, _ size: Int,
    _ outModel: UnsafeMutablePointer<OpaquePointer?>?
) -> liverseg_status {
    outModel?.pointee = nil
    return boundary("liverseg_model_load_memory") {
        let out = try required(outModel, "out_model")
        let data = try required(data, "data")
        let bytes = Array(UnsafeRawBufferPointer(start: data, count: try checkedSize(UInt(bitPattern: size), "size")))
        out.pointee = makeHandle(try Model(bytes: bytes))
    }
}

@_cdecl("liverseg_model_free")
public func liverseg_model_free(_ model: OpaquePointer?) {
    if let model { releaseHandle(model) }
}

/// struct_size of each released liverseg_model_info layout, oldest first.
private let modelInfoSizes = [
    MemoryLayout<liverseg_model_info>.offset(of: \.n_networks)!, MemoryLayout<liverseg_model_info>.size,
]

@_cdecl("liverseg_model_get_info")
public func liverseg_model_get_info(
    _ model: OpaquePointer?, _ info: UnsafeMutablePointer<liverseg_model_info>?
) -> liverseg_status {
    boundary("liverseg_model_get_info") {
        let model = try handle(model).model
        let info = try required(info, "info")
        let declared = info.pointee.struct_size
        try checkStructSize(declared, released: modelInfoSizes, "info")
        var out = liverseg_model_info()
        out.struct_size = declared
        out.format_version = Int32(model.formatVersion)
        out.n_networks = Int32(model.networks.count)
        let a = model.architecture
        withUnsafeMutableBytes(of: &out.conv_channels) { raw in
            for (i, c) in a.convChannels.enumerated() { raw.storeBytes(of: Int32(c), toByteOffset: 4 * i, as: Int32.self) }
        }
        withUnsafeMutableBytes(of: &out.conv_kernel) { raw in
            for (i, k) in a.convKernels.enumerated() {
                for (j, e) in [k.x, k.y, k.z].enumerated() {
                    raw.storeBytes(of: Int32(e), toByteOffset: 4 * (3 * i + j), as: Int32.self)
                }
            }
        }
        out.main_deconv_channels = Int32(a.mainDeconvChannels)
        out.branch2_deconv_channels = Int32(a.branch2DeconvChannels)
        out.n_classes = Int32(a.classes)
        let p = model.preprocessing
        out.spacing = (p.spacing[0], p.spacing[1], p.spacing[2])
        let code = Array(p.orientation.description.utf8)
        out.orientation = (CChar(code[0]), CChar(code[1]), CChar(code[2]), 0)
        out.hu_window = (p.huWindow.lower, p.huWindow.upper)
        out.intensity_mean = p.mean
        out.intensity_std = p.std
        out.fusion_tau = (model.fusionTau[0], model.fusionTau[1])
        out.n_parameters = a.parameterCount
        // Never beyond the caller's struct: a 0.1 program's has no n_networks.
        withUnsafeBytes(of: &out) { UnsafeMutableRawPointer(info).copyMemory(from: $0.baseAddress!, byteCount: declared) }
    }
}

@_cdecl("liverseg_model_metadata_json")
public func liverseg_model_metadata_json(_ model: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let handle = try? handle(model) else { return nil }
    return handle.metadataCString.withUnsafeBufferPointer { $0.baseAddress }
}
