#if canImport(Glibc)
import Glibc
#endif

/// Severity of a log message.
public enum LogLevel: Int, Sendable, Comparable {
    case debug = 0, info = 1, warning = 2, error = 3
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// The process-wide log sink. Messages go to one handler (none by default); setting and
/// reading it are serialised by a mutex so any thread may log or replace the handler.
public enum Log {
    /// Receives messages at or above a level.
    public typealias Handler = @Sendable (LogLevel, String) -> Void

    nonisolated(unsafe) private static var handler: Handler?
    nonisolated(unsafe) private static var minimumLevel = LogLevel.info
    nonisolated(unsafe) private static var mutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    /// Installs `handler` (nil: logging off) for messages at or above `level`.
    public static func setHandler(_ handler: Handler?, level: LogLevel) {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        self.handler = handler
        self.minimumLevel = level
    }

    /// Sends a message; `message` is only built when someone listens at that level.
    public static func write(_ level: LogLevel, _ message: @autoclosure () -> String) {
        pthread_mutex_lock(mutex)
        let current = level >= minimumLevel ? handler : nil
        pthread_mutex_unlock(mutex)
        current?(level, message())
    }
}
