#if canImport(Glibc)
import Glibc
#endif

/// A fixed-size, heap-allocated array with reference semantics.
///
/// Used for activations and volumes: large allocations must report failure as
/// `LiversegError.outOfMemory` instead of trapping, and hot loops want raw pointers
/// without copy-on-write or exclusivity checks.
public final class Buffer<Element>: @unchecked Sendable {
    /// Number of elements.
    public let count: Int
    /// The elements; valid for the buffer's lifetime.
    public let pointer: UnsafeMutablePointer<Element>

    /// Allocates `count` elements, zero-filled when `zeroed` is true (`Element` must be a
    /// plain numeric type whose all-zero bytes mean zero).
    public init(count: Int, zeroed: Bool = true) throws {
        precondition(count >= 0)
        let stride = MemoryLayout<Element>.stride
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: stride)
        guard !overflow, let raw = zeroed ? calloc(max(count, 1), stride) : malloc(bytes) else {
            throw LiversegError.outOfMemory("could not allocate \(count) × \(stride) bytes")
        }
        self.count = count
        self.pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    /// Allocates a buffer holding a copy of `values`.
    public convenience init(_ values: [Element]) throws {
        try self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.initialize(from: base, count: values.count) }
        }
    }

    deinit { free(pointer) }

    /// The elements as a buffer pointer.
    public var buffer: UnsafeMutableBufferPointer<Element> { .init(start: pointer, count: count) }

    /// A copy of the elements as an array (tests and small tensors).
    public var array: [Element] { Array(buffer) }
}

/// The buffer type of volumes, probabilities and inference activations.
public typealias FloatBuffer = Buffer<Float>
