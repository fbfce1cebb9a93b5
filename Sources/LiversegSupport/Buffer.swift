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

    /// The pool the memory returns to when the buffer is freed: set for buffers of at least
    /// `BufferPool.minimumBytes` allocated on a thread inside `BufferPool.using`.
    private let pool: BufferPool?

    /// Allocates `count` elements, zero-filled when `zeroed` is true (`Element` must be a
    /// plain numeric type whose all-zero bytes mean zero). Inside `BufferPool.using`, large
    /// buffers reuse the pool's freed memory of the same size.
    public init(count: Int, zeroed: Bool = true) throws {
        precondition(count >= 0)
        let stride = MemoryLayout<Element>.stride
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: stride)
        let pool = !overflow && bytes >= BufferPool.minimumBytes ? BufferPool.current : nil
        let raw: UnsafeMutableRawPointer
        if let reused = pool?.take(bytes: bytes) {
            if zeroed { memset(reused, 0, bytes) }
            raw = reused
        } else {
            guard !overflow, let fresh = zeroed ? calloc(max(count, 1), stride) : malloc(bytes) else {
                throw LiversegError.outOfMemory("could not allocate \(count) × \(stride) bytes")
            }
            raw = fresh
        }
        self.count = count
        self.pool = pool
        self.pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    /// Allocates a buffer holding a copy of `values`.
    public convenience init(_ values: [Element]) throws {
        try self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.initialize(from: base, count: values.count) }
        }
    }

    deinit {
        if let pool {
            pool.give(UnsafeMutableRawPointer(pointer), bytes: max(count, 1) * MemoryLayout<Element>.stride)
        } else {
            free(pointer)
        }
    }

    /// The elements as a buffer pointer.
    public var buffer: UnsafeMutableBufferPointer<Element> { .init(start: pointer, count: count) }

    /// A copy of the elements as an array (tests and small tensors).
    public var array: [Element] { Array(buffer) }
}

/// The buffer type of volumes, probabilities and inference activations.
public typealias FloatBuffer = Buffer<Float>

/// Freed large buffers kept for allocations of the same size, so that a computation
/// repeated on the same shapes — a network pass per tile, per training step, per call —
/// reuses memory that is already mapped. Fresh memory costs a page fault per 4 KiB on first
/// touch: a paper-network forward pass of 160×160×72 took 36 k of them, ≈ 10 % of its CPU
/// time, and they scale badly across threads (docs/benchmarks.md, session 10).
///
/// Buffers of at least `minimumBytes` allocated on a thread while it runs `using` come from
/// the pool and return to it when freed, from any thread. It keeps at most `limitBytes` of
/// freed buffers (the rest go back to the system); `trim` releases them all, as does the
/// pool's end. Thread-safe.
public final class BufferPool: @unchecked Sendable {
    /// Smaller buffers come from malloc as usual (its own free lists serve them well).
    public static let minimumBytes = 1 << 20
    /// The most freed bytes kept.
    public let limitBytes: Int
    /// The default limit: a paper-network forward pass over 160×160×72 allocates ≈ 0.25 GB,
    /// a training step on a 64×64×48 patch less; larger passes keep what fits.
    public static let defaultLimitBytes = 1 << 30
    private var freeBlocks: [Int: [UnsafeMutableRawPointer]] = [:]
    private var freeBytes = 0
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    /// A pool that keeps at most `limitBytes` of freed buffers.
    public init(limitBytes: Int = BufferPool.defaultLimitBytes) {
        self.limitBytes = limitBytes
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        trim()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with this pool serving the large buffers allocated on the calling thread
    /// (nested calls: the innermost pool serves).
    public func using<R>(_ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(currentPoolKey)
        pthread_setspecific(currentPoolKey, Unmanaged.passUnretained(self).toOpaque())
        defer { pthread_setspecific(currentPoolKey, previous) }
        return try withExtendedLifetime(self) { try body() }
    }

    /// The pool serving the calling thread, if any.
    static var current: BufferPool? {
        pthread_getspecific(currentPoolKey).map { Unmanaged<BufferPool>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Releases every freed buffer the pool keeps.
    public func trim() {
        pthread_mutex_lock(mutex)
        let released = freeBlocks.values.flatMap { $0 }
        freeBlocks = [:]
        freeBytes = 0
        pthread_mutex_unlock(mutex)
        for block in released { free(block) }
    }

    /// Bytes of freed buffers kept now.
    public var keptBytes: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return freeBytes
    }

    /// A freed buffer of exactly `bytes`, or nil.
    func take(bytes: Int) -> UnsafeMutableRawPointer? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard let block = freeBlocks[bytes]?.popLast() else { return nil }
        freeBytes -= bytes
        return block
    }

    /// Keeps `block` (`bytes` long, from malloc) for reuse, or frees it when the pool is full.
    func give(_ block: UnsafeMutableRawPointer, bytes: Int) {
        pthread_mutex_lock(mutex)
        let keep = freeBytes + bytes <= limitBytes
        if keep {
            freeBlocks[bytes, default: []].append(block)
            freeBytes += bytes
        }
        pthread_mutex_unlock(mutex)
        if !keep { free(block) }
    }

    /// Fills every kept buffer with `byte` (tests: a computation that reads memory before
    /// writing it then gives different results).
    package func fillKept(with byte: UInt8) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        for (bytes, blocks) in freeBlocks { for block in blocks { memset(block, Int32(byte), bytes) } }
    }
}

/// The thread-specific slot holding the pool `BufferPool.using` installed.
private let currentPoolKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()
