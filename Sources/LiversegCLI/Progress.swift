#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport

/// A one-line progress bar on stderr: stage, bar, percent, elapsed and remaining time.
/// Silent unless stderr is a terminal and the user did not ask for quiet.
final class ProgressBar {
    private let enabled: Bool
    private let start = monotonicSeconds()
    private var lastDraw = -Double.infinity
    private var drawn = false

    init(quiet: Bool) { enabled = !quiet && isatty(STDERR_FILENO) != 0 }

    /// Shows `fraction` (0...1) of the work done in `stage`; redraws at most 10 times a second.
    func update(_ stage: String, _ fraction: Double) {
        guard enabled else { return }
        let now = monotonicSeconds()
        guard fraction >= 1 || now - lastDraw >= 0.1 else { return }
        lastDraw = now
        let f = min(max(fraction, 0), 1), elapsed = now - start
        let width = 30, filled = Int(Double(width) * f)
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let remaining = f > 0.01 ? format(elapsed * (1 - f) / f) : "--:--"
        let line =
            "\r\(stage.rightPadded(to: 12)) \(bar) \(String(Int(f * 100)).leftPadded(to: 3))%  \(format(elapsed)) elapsed, \(remaining) left \u{1B}[K"
        writeToStandardError(line)
        drawn = true
    }

    /// Ends the bar's line.
    func finish() {
        guard drawn else { return }
        writeToStandardError("\n")
        drawn = false
    }

    private func format(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return "\(s / 60):" + (s % 60 < 10 ? "0" : "") + String(s % 60)
    }
}
