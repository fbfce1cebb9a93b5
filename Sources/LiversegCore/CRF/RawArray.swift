#if canImport(Glibc)
import Glibc
#endif

/// Heap storage for plain numbers (Int32, Float, Double) that reports allocation failure
/// as `LiversegError.outOfMemory` instead of trapping, and can grow in place: the lattice's
/// tables are sized from the data and may be large.
final class RawArray<Element> {
    /// Number of elements.
    private(set) var count: Int
    /// The elements; invalidated by `grow`.
    private(set) var pointer: UnsafeMutablePointer<Element>
    private let what: String

    /// Allocates `count` uninitialised elements; `what` names the table in error messages.
    init(count: Int, what: String) throws {
        self.what = what
        self.count = 0
        self.pointer = try RawArray.reallocate(nil, count: count, what: what)
        self.count = count
    }

    /// Allocates `count` elements, each set to `value`.
    convenience init(repeating value: Element, count: Int, what: String) throws {
        try self.init(count: count, what: what)
        pointer.initialize(repeating: value, count: count)
    }

    deinit { free(pointer) }

    /// Resizes to `newCount` elements keeping the first min(count, newCount).
    func resize(to newCount: Int) throws {
        pointer = try RawArray.reallocate(pointer, count: newCount, what: what)
        count = newCount
    }

    private static func reallocate(_ old: UnsafeMutablePointer<Element>?, count: Int, what: String) throws -> UnsafeMutablePointer<Element> {
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard count >= 0, !overflow, let raw = realloc(old, bytes) else {
            throw LiversegError.outOfMemory("could not allocate \(count) elements for the \(what)")
        }
        return raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }
}
