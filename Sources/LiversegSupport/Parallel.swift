import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Number of online processors.
@usableFromInline package var availableCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// Resolves a requested thread count: 0 (or less) means all cores.
@inlinable
package func resolvedThreadCount(_ requested: Int) -> Int {
    requested > 0 ? requested : availableCores
}

/// Runs `body(i)` for every i in 0..<count on up to `threads` threads.
///
/// Work is split into `threads` contiguous ranges so that every index's result is computed
/// by exactly one thread with the same arithmetic whatever the thread count: results stay
/// bit-identical across thread counts as long as `body` only writes what index i owns.
/// Inlinable, as are the two below: inlined into each kernel, the compiler optimises the
/// loop body with the kernel (a closure called across a module boundary runs 5–10 % slower
/// in the CRF).
@inlinable
package func parallelFor(_ count: Int, threads: Int, _ body: (Int) -> Void) {
    parallelChunks(count, threads: threads) { _, range in
        for i in range { body(i) }
    }
}

/// Splits 0..<count into at most `threads` contiguous ranges and runs
/// `body(worker, range)` for each on its own thread; `worker` indexes per-thread scratch.
@inlinable
package func parallelChunks(_ count: Int, threads: Int, _ body: (Int, Range<Int>) -> Void) {
    guard count > 0 else { return }
    let workers = min(max(1, threads), count)
    if workers == 1 {
        body(0, 0..<count)
        return
    }
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            body(w, (count * w / workers)..<(count * (w + 1) / workers))
        }
    }
}

/// Runs body(worker, range) over 0..<count as `parallelChunks` does, but in rounds, and
/// calls `checkpoint(fraction done)` on the calling thread after each round, so that long
/// parallel loops report progress (and stop on a thrown cancellation) between rounds.
/// Rounds are sized from the time the previous ones took (see `RoundSizer`). Every index
/// is computed by one worker with the same arithmetic whatever the rounds, so results do
/// not depend on them.
@inlinable
package func parallelRounds(
    _ count: Int, threads: Int, checkpoint: (Double) throws -> Void,
    _ body: (Int, Range<Int>) -> Void
) rethrows {
    var sizer = RoundSizer(minimum: threads)
    var start = 0
    while start < count {
        let end = min(count, start + sizer.size)
        let began = monotonicSeconds()
        parallelChunks(end - start, threads: threads) { worker, range in
            body(worker, (start + range.lowerBound)..<(start + range.upperBound))
        }
        sizer.finished(seconds: monotonicSeconds() - began)
        try checkpoint(Double(end) / Double(count))
        start = end
    }
}

/// The number of work items per round between two progress checkpoints: `minimum` (e.g.
/// one per thread) at first, then scaled by the measured time per item so that a round takes about
/// `target` seconds (growing at most 4× per round), which keeps progress callbacks and
/// cancellation within about 100 ms of each other even on a loaded machine.
public struct RoundSizer {
    /// Seconds a round should take: short against 100 ms, long against a round's overhead
    /// (waking the worker threads, tens of microseconds).
    public static let target = 0.02
    private let minimum: Int
    /// Items in the next round.
    public private(set) var size: Int

    /// Starts with `minimum` items, the fewest a round gets.
    public init(minimum: Int) {
        self.minimum = max(1, minimum)
        size = minimum
    }

    /// Records that the last round of `size` items took `seconds`.
    public mutating func finished(seconds: Double) {
        let scaled = seconds > 0 ? Double(size) * Self.target / seconds : Double(4 * size)
        size = max(minimum, Int(min(scaled, Double(4 * size))))
    }
}

/// Seconds on the monotonic clock, for timing log messages.
@usableFromInline package func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
