import CLiverseg

/// "MAJOR.MINOR.PATCH" from the header's version macros, NUL-terminated, kept for the
/// process's lifetime.
private let versionString: [CChar] = Array("\(LIVERSEG_VERSION_MAJOR).\(LIVERSEG_VERSION_MINOR).\(LIVERSEG_VERSION_PATCH)".utf8CString)
private let versionPointer: UnsafePointer<CChar> = {
    let copy = UnsafeMutablePointer<CChar>.allocate(capacity: versionString.count)
    copy.initialize(from: versionString, count: versionString.count)
    return UnsafePointer(copy)
}()

@_cdecl("liverseg_version")
public func liverseg_version() -> UnsafePointer<CChar> { versionPointer }

@_cdecl("liverseg_abi_version")
public func liverseg_abi_version() -> Int32 { LIVERSEG_ABI_VERSION }
