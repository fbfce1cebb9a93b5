import CLiverseg
#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegPipeline

// The C boundary: every exported function funnels through `boundary`, which turns thrown
// errors into a status plus a thread-local message, so nothing thrown crosses into C.

/// Runs `body`, clearing the last error first; maps a thrown error to its status and message.
func boundary(_ function: String, _ body: () throws -> Void) -> liverseg_status {
    lvs_clear_last_error()
    do {
        try body()
        return LIVERSEG_OK
    } catch let error as LiversegError {
        let status: liverseg_status
        switch error {
        case .invalidArgument: status = LIVERSEG_INVALID_ARGUMENT
        case .io: status = LIVERSEG_IO_ERROR
        case .invalidModel: status = LIVERSEG_INVALID_MODEL
        case .unsupported: status = LIVERSEG_UNSUPPORTED
        case .outOfMemory: status = LIVERSEG_OUT_OF_MEMORY
        case .cancelled: status = LIVERSEG_CANCELLED
        case .internalError: status = LIVERSEG_INTERNAL_ERROR
        }
        lvs_set_last_error("\(function): \(error)")
        return status
    } catch {
        lvs_set_last_error("\(function): internal error: \(error)")
        return LIVERSEG_INTERNAL_ERROR
    }
}

/// Throws `invalidArgument` naming `name` when a required pointer is NULL.
func required<T>(_ pointer: T?, _ name: String) throws -> T {
    guard let pointer else { throw LiversegError.invalidArgument("\(name) is NULL") }
    return pointer
}

/// Converts a C size to Int, rejecting values beyond Int's range.
func checkedSize(_ value: UInt, _ name: String) throws -> Int {
    guard value <= UInt(Int.max) else { throw LiversegError.invalidArgument("\(name) \(value) is too large") }
    return Int(value)
}

/// Checks a struct's declared size against the one this library was built with.
func checkStructSize(_ declared: Int, expected: Int, _ name: String) throws {
    try checkStructSize(declared, released: [expected], name)
}

/// Checks a struct's declared size against the sizes of its released layouts.
func checkStructSize(_ declared: Int, released: [Int], _ name: String) throws {
    guard released.contains(declared) else {
        let sizes = released.map(String.init).joined(separator: " or ")
        let hint = declared > released.max()! ? " (built against a newer liverseg header?)" : ""
        throw LiversegError.invalidArgument(
            "\(name).struct_size is \(declared) but this library knows \(sizes)\(hint); start from the *_params_init() function")
    }
}

/// A caller's params struct whose layout grows at its end between releases: the caller's
/// struct_size (its first field, one of `released`) bytes are read — never more — over
/// `defaults`, so fields an older caller does not have keep their default values. NULL
/// gives `defaults`.
func versionedParams<T>(_ pointer: UnsafePointer<T>?, defaults: T, released: [Int], _ name: String) throws -> T {
    guard let pointer else { return defaults }
    let declared = UnsafeRawPointer(pointer).load(as: Int.self)
    try checkStructSize(declared, released: released, name)
    var result = defaults
    withUnsafeMutableBytes(of: &result) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: declared)) }
    return result
}

/// Fills the first `size` bytes of a caller's params struct (one of `released`) with
/// `defaults` and records `size` in its struct_size (the first field).
func initialiseParams<T>(_ pointer: UnsafeMutablePointer<T>?, size: Int, defaults: T, released: [Int], _ name: String) throws {
    let pointer = try required(pointer, name)
    try checkStructSize(size, released: released, "\(name) (struct_size argument)")
    var value = defaults
    withUnsafeMutableBytes(of: &value) { bytes in
        bytes.storeBytes(of: size, as: Int.self)
        UnsafeMutableRawPointer(pointer).copyMemory(from: bytes.baseAddress!, byteCount: size)
    }
}

// MARK: Model handles

/// Boxes a model behind an opaque C handle.
final class ModelHandle {
    let model: Model
    /// NUL-terminated copy of the metadata for liverseg_model_metadata_json.
    let metadataCString: [CChar]
    init(_ model: Model) {
        self.model = model
        self.metadataCString = Array(model.metadataJSON.utf8CString)
    }
}

/// Addresses of live handles: every pointer from C is checked against it before use, so a
/// stale, freed or foreign pointer gets an error instead of a crash.
private nonisolated(unsafe) var liveHandles = Set<UInt>()
private nonisolated(unsafe) var handleMutex: UnsafeMutablePointer<pthread_mutex_t> = {
    let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    pthread_mutex_init(m, nil)
    return m
}()

private func withHandleLock<R>(_ body: () throws -> R) rethrows -> R {
    pthread_mutex_lock(handleMutex); defer { pthread_mutex_unlock(handleMutex) }
    return try body()
}

/// Registers a new handle and returns its C pointer.
func makeHandle(_ model: Model) -> OpaquePointer {
    let pointer = Unmanaged.passRetained(ModelHandle(model)).toOpaque()
    withHandleLock { _ = liveHandles.insert(UInt(bitPattern: pointer)) }
    return OpaquePointer(pointer)
}

/// The handle behind a C pointer, or an error if it is NULL or not a live handle.
func handle(_ pointer: OpaquePointer?, _ name: String = "model") throws -> ModelHandle {
    let raw = UnsafeRawPointer(try required(pointer, name))
    return try withHandleLock {
        guard liveHandles.contains(UInt(bitPattern: raw)) else {
            throw LiversegError.invalidArgument(
                "\(name) is not a live liverseg_model (freed twice, or not from liverseg_model_load_*)")
        }
        return Unmanaged<ModelHandle>.fromOpaque(raw).takeUnretainedValue()
    }
}

/// Unregisters and releases a handle; unknown pointers are ignored.
func releaseHandle(_ pointer: OpaquePointer) {
    let raw = UnsafeRawPointer(pointer)
    let wasLive = withHandleLock { liveHandles.remove(UInt(bitPattern: raw)) != nil }
    if wasLive { Unmanaged<ModelHandle>.fromOpaque(raw).release() }
}
