import CLiverseg

@_cdecl("liverseg_version")
public func liverseg_version() -> UnsafePointer<CChar> { lvs_version_string() }

@_cdecl("liverseg_abi_version")
public func liverseg_abi_version() -> Int32 { LIVERSEG_ABI_VERSION }
