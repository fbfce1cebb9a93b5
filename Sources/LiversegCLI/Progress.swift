import Foundation

/// A one-line progress bar on stderr: stage, bar, percent, elapsed and remaining time.
/// Silent unless stderr is a terminal and the user did not ask for quiet.
final class ProgressBar {
    private let enabled: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false

    init(quiet: Bool) { enabled = !quiet && isatty(STDERR_FILENO) != 0 }

    /// Shows `fraction` (0...1) of the work done in `stage`; redraws at most 10 times a second.
    func update(_ stage: String, _ fraction: Double) {
        guard enabled else { return }
        let now = Date()
        guard fraction >= 1 || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = now
        let f = min(max(fraction, 0), 1), elapsed = now.timeIntervalSince(start)
        let width = 30, filled = Int(Double(width) * f)
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let remaining = f > 0.01 ? format(elapsed * (1 - f) / f) : "--:--"
        let line =
            "\r\(stage.padding(toLength: 12, withPad: " ", startingAt: 0)) \(bar) \(String(format: "%3d%%", Int(f * 100)))  \(format(elapsed)) elapsed, \(remaining) left \u{1B}[K"
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    /// Ends the bar's line.
    func finish() {
        guard drawn else { return }
        FileHandle.standardError.write(Data("\n".utf8))
        drawn = false
    }

    private func format(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return String(format: "%d:%02d", s / 60, s % 60)
    }
}
