import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import COpenBLAS

/// Number of online processors.
public var availableCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// Resolves a requested thread count: 0 (or less) means all cores.
@inlinable
public func resolvedThreadCount(_ requested: Int) -> Int {
    requested > 0 ? requested : availableCores
}

/// Runs `body(i)` for every i in 0..<count on up to `threads` threads.
///
/// Work is split into `threads` contiguous ranges so that every index's result is computed
/// by exactly one thread with the same arithmetic whatever the thread count: results stay
/// bit-identical across thread counts as long as `body` only writes what index i owns.
public func parallelFor(_ count: Int, threads: Int, _ body: (Int) -> Void) {
    parallelChunks(count, threads: threads) { _, range in
        for i in range { body(i) }
    }
}

/// Splits 0..<count into at most `threads` contiguous ranges and runs
/// `body(worker, range)` for each on its own thread; `worker` indexes per-thread scratch.
public func parallelChunks(_ count: Int, threads: Int, _ body: (Int, Range<Int>) -> Void) {
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

/// Makes OpenBLAS single-threaded once per process: liverseg parallelises over blocks
/// itself, and concurrent calls into a multi-threaded OpenBLAS would serialise.
let configureBLASOnce: Void = { openblas_set_num_threads(1) }()

/// Seconds on the monotonic clock, for timing log messages.
public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
