/// Every failure the core reports. The C boundary maps each case to a `liverseg_status`.
public enum LiversegError: Error, Equatable, CustomStringConvertible {
    /// A caller-supplied value is invalid; the message names it.
    case invalidArgument(String)
    /// A file could not be read or written.
    case io(String)
    /// A model file is malformed or inconsistent with its architecture.
    case invalidModel(String)
    /// Valid input that this build does not support.
    case unsupported(String)
    /// An allocation failed.
    case outOfMemory(String)
    /// The progress callback asked to stop.
    case cancelled
    /// An invariant of liverseg itself was broken.
    case internalError(String)

    public var description: String {
        switch self {
        case .invalidArgument(let m): return "invalid argument: \(m)"
        case .io(let m): return "I/O error: \(m)"
        case .invalidModel(let m): return "invalid model: \(m)"
        case .unsupported(let m): return "unsupported: \(m)"
        case .outOfMemory(let m): return "out of memory: \(m)"
        case .cancelled: return "cancelled by the progress callback"
        case .internalError(let m): return "internal error: \(m)"
        }
    }
}

/// Multiplies sizes, throwing instead of trapping on overflow.
@inlinable
package func checkedProduct(_ values: [Int], what: String) throws -> Int {
    var product = 1
    for v in values {
        guard v >= 0 else { throw LiversegError.invalidArgument("\(what): negative size \(v)") }
        let (p, overflow) = product.multipliedReportingOverflow(by: v)
        guard !overflow else { throw LiversegError.invalidArgument("\(what): size \(values) overflows") }
        product = p
    }
    return product
}
