import ArgumentParser
import LiversegSupport
import LiversegImageIO
import LiversegVolume
import LiversegCRF
import LiversegPipeline
import LiversegTraining

struct LeaveOneOut: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loo",
        abstract: "Leave-one-out evaluation as the paper's Table 1: 3D-CNN, 3D-DSN, each with and without the CRF.",
        discussion: """
            For each case: train a 3D-DSN and a 3D-CNN (no deep supervision) on the other cases \
            with the given training options; pick the CRF setting with the lowest mean VOE on \
            those training cases (never the held-out one) from the --crf-* grids; then segment \
            the held-out case and score it. Writes OUT/table.txt, table.csv, table.md, folds.csv \
            and each fold's models; prints the table (means over folds). A run whose network \
            reaches a mean Dice below \(LeaveOneOutExperiment.collapseDice) on its own training cases is reported as \
            collapsed (folds.csv, table.txt and a warning); its rows stay in the means.
            """)

    @Option(help: "Labelled cases: CT,MASK or a folder of case folders (repeatable); at least 2.")
    var data: [String]

    @OptionGroup var training: TrainingOptions

    @Option(help: "Output folder.")
    var out: String

    @Option(help: "CRF grid: μ1 values (comma-separated).")
    var crfMu1 = "1,3,5"

    @Option(help: "CRF grid: θβ values in HU (comma-separated).")
    var crfThetaBeta = "10,15,25"

    @Option(help: "CRF grid: θα values in mm (comma-separated).")
    var crfThetaAlpha = "12"

    @Option(help: "CRF mode of the grid search and the +CRF rows: slice2d or volume3d (default: the library's, volume3d).")
    var crfMode: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func run() throws {
        try reportingErrors {
            let all = try LabelledCase.parse(data)
            let experiment = LeaveOneOutExperiment(
                cases: all, configuration: try training.configuration(), epochs: training.epochs, crfGrid: try crfGrid(),
                folder: out, provenance: { c, data, epochs in training.provenance(c, data: data, epochs: epochs) },
                say: say)
            let result = try experiment.run()
            for (file, content) in [
                ("table.txt", result.text), ("table.csv", result.csv), ("table.md", result.markdown),
                ("folds.csv", result.foldsCSV),
            ] {
                try writeFileAtomically(Array(content.utf8), to: "\(out)/\(file)")
            }
            print(result.text, terminator: "")
        }
    }

    private func say(_ line: String) {
        if !quiet { writeToStandardError(line + "\n") }
    }

    private func crfGrid() throws -> [CRFParameters] {
        let mode =
            try crfMode.map { name in
                guard let mode = CRFMode(name: name) else {
                    throw LiversegError.invalidArgument("--crf-mode must be slice2d or volume3d, not \"\(name)\"")
                }
                return mode
            } ?? CRFParameters().mode
        var grid: [CRFParameters] = []
        for mu1 in try commaSeparatedNumbers(crfMu1, option: "crf-mu1") {
            for alpha in try commaSeparatedNumbers(crfThetaAlpha, option: "crf-theta-alpha") {
                for beta in try commaSeparatedNumbers(crfThetaBeta, option: "crf-theta-beta") {
                    var p = CRFParameters()
                    p.mode = mode
                    p.bilateralWeight = mu1
                    p.thetaAlphaMM = alpha
                    p.thetaBetaHU = beta
                    p.threads = training.threads
                    try p.validate()
                    grid.append(p)
                }
            }
        }
        return grid
    }
}
