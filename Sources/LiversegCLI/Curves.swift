import ArgumentParser
import Foundation
import LiversegCore

struct Curves: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plot training losses against epoch from `liverseg train --log` CSV files (as the paper's Fig. 2(a)).",
        discussion: """
        One line per log, in order: red, blue, green, orange — e.g. the 3D-DSN log first and \
        the 3D-CNN log second. The y axis runs from 0 to the largest loss, the x axis from 0 to \
        the last epoch; both maxima are printed on the chart.
        """)

    @Argument(help: "CSV logs written by `liverseg train --log`.")
    var logs: [String]

    @Option(help: "Column to plot: loss (eq. 3 total), main, branch1 or branch2.")
    var column = "main"

    @Option(help: "The PNG to write.")
    var out: String

    func run() throws {
        try reportingErrors {
            var series: [LearningCurves.Series] = []
            for (i, path) in logs.enumerated() {
                let text = String(decoding: try readWholeFile(path), as: UTF8.self)
                var lines = text.split(whereSeparator: \.isNewline).map { $0.split(separator: ",", omittingEmptySubsequences: false) }
                guard let header = lines.first, let e = header.firstIndex(of: "epoch"),
                      let c = header.firstIndex(where: { $0 == Substring(column) }) else {
                    throw LiversegError.invalidArgument("\(path) has no epoch and \(column) columns")
                }
                lines.removeFirst()
                let points = lines.compactMap { row -> (epoch: Double, loss: Double)? in
                    guard row.count > max(e, c), let x = Double(row[e]), let y = Double(row[c]) else { return nil }
                    return (x, y)
                }
                series.append(.init(colour: LearningCurves.palette[i % LearningCurves.palette.count], points: points))
            }
            try writeFileAtomically(try LearningCurves().render(series).pngData(), to: out)
        }
    }
}
