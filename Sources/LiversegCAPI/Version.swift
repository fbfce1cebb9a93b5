import CLiverseg

/// "MAJOR.MINOR.PATCH" as static C storage, matching the header's version macros.
private let versionString: StaticString = "0.1.0"

@_cdecl("liverseg_version")
public func liverseg_version() -> UnsafePointer<CChar> {
    UnsafeRawPointer(versionString.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("liverseg_abi_version")
public func liverseg_abi_version() -> Int32 { LIVERSEG_ABI_VERSION }
