import ArgumentParser
import LiversegSupport
import LiversegImageIO
import LiversegTraining

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
            let texts = try logs.map { (name: $0, text: String(decoding: try readWholeFile($0), as: UTF8.self)) }
            try writeFileAtomically(try learningCurvesPNG(texts, column: column), to: out)
        }
    }
}
