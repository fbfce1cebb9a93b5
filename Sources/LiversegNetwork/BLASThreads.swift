import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS's thread count is process-wide. liverseg runs its GEMMs from its own worker
/// threads and wants each single-threaded, so while any liverseg computation runs the
/// count is 1; the host's setting is saved when the first of concurrent computations
/// starts and restored when the last ends.
private nonisolated(unsafe) var blasUsers = 0
private nonisolated(unsafe) var blasHostThreads: Int32 = 1
private let blasMutex: UnsafeMutablePointer<pthread_mutex_t> = {
    let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    pthread_mutex_init(m, nil)
    return m
}()

/// Runs `body` with OpenBLAS single-threaded, then restores the host's thread count.
package func withSingleThreadedBLAS<R>(_ body: () throws -> R) rethrows -> R {
    pthread_mutex_lock(blasMutex)
    if blasUsers == 0 {
        blasHostThreads = openblas_get_num_threads()
        if blasHostThreads != 1 { openblas_set_num_threads(1) }
    }
    blasUsers += 1
    pthread_mutex_unlock(blasMutex)
    defer {
        pthread_mutex_lock(blasMutex)
        blasUsers -= 1
        if blasUsers == 0, blasHostThreads != 1 { openblas_set_num_threads(blasHostThreads) }
        pthread_mutex_unlock(blasMutex)
    }
    return try body()
}
