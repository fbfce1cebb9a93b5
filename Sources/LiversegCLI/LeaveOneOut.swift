import ArgumentParser
import Foundation
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
            reaches a mean Dice below \(collapseDice) on its own training cases is reported as \
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
            let all = try cases(data)
            guard all.count >= 2 else {
                throw LiversegError.invalidArgument("leave-one-out needs at least 2 cases, got \(all.count)")
            }
            let grid = try crfGrid()
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let base = try training.configuration()
            let volumes = try all.map {
                try TrainingVolume(
                    ctPath: $0.ct, maskPath: $0.mask, preprocessing: base.preprocessing,
                    threads: resolvedThreadCount(base.threads))
            }
            let rows = ["3D-CNN", "3D-DSN", "3D-CNN+CRF", "3D-DSN+CRF"]
            var results: [String: [SegmentationMetrics]] = [:]
            var folds =
                "fold,held_out,method,voe,vd,avgd,rmsd,maxd,dice,training_dice,collapsed,crf_mode,crf_mu1,crf_theta_alpha_mm,crf_theta_beta_hu\n"
            var collapsedRuns: [String] = []
            for (k, heldOut) in all.enumerated() {
                let trainingCases = all.indices.filter { $0 != k }
                for deepSupervision in [false, true] {
                    let name = deepSupervision ? "3D-DSN" : "3D-CNN"
                    var c = base
                    c.deepSupervision = deepSupervision
                    let trainer = try Trainer(configuration: c)
                    let sampler = try c.sampler(trainingCases.map { volumes[$0] })
                    let stem = "\(out)/fold\(k + 1)-\(name)"
                    if let saved = try? readWholeFile(stem + ".checkpoint") {
                        try trainer.resume(fromCheckpoint: saved)
                        say("fold \(k + 1)/\(all.count) \(name): resuming after epoch \(trainer.epochsDone)")
                    }
                    let provenance = { (epoch: Int) in
                        [
                            (
                                "provenance",
                                training.provenance(
                                    c, data: trainingCases.map { all[$0].ct }, epochs: epoch)
                            )
                        ]
                    }
                    try trainWithCheckpoints(
                        trainer, sampler, epochs: training.epochs, model: stem + ".safetensors",
                        checkpoint: stem + ".checkpoint", log: stem + ".csv", metadata: provenance,
                        report: { summary, _ in
                            say(
                                "fold \(k + 1)/\(all.count) \(name) epoch \(summary.epoch)/\(training.epochs) loss \(String(format: "%.4f", summary.total)) main \(String(format: "%.4f", summary.main))"
                            )
                        })
                    let model = try trainer.model(extraMetadata: provenance(training.epochs))
                    // A run finished earlier is re-scored with today's model-building rules.
                    try writeFileAtomically(model.fileBytes(), to: stem + ".safetensors")
                    // CRF setting chosen on the training cases only.
                    let trainingOutputs = try trainingCases.map { try segmentCase(model, all[$0]) }
                    let trainingDice =
                        try trainingOutputs.map { try $0.metrics(of: $0.thresholded).dice }
                        .reduce(0, +) / Double(trainingOutputs.count)
                    let collapsed = trainingDice < Self.collapseDice
                    if collapsed {
                        collapsedRuns.append("fold \(k + 1) \(name)")
                        say(
                            "warning: fold \(k + 1) \(name) collapsed: mean Dice \(String(format: "%.3f", trainingDice)) on its own training cases"
                        )
                    }
                    var best = (voe: Double.infinity, parameters: CRFParameters())
                    for parameters in grid {
                        let voe =
                            try trainingOutputs.map { output in
                                try output.metrics(of: output.refined(parameters))
                            }.map(\.voe).reduce(0, +) / Double(trainingOutputs.count)
                        if voe < best.voe { best = (voe, parameters) }
                    }
                    let test = try segmentCase(model, heldOut)
                    for (method, mask) in [(name, test.thresholded), (name + "+CRF", try test.refined(best.parameters))] {
                        let m = try test.metrics(of: mask)
                        results[method, default: []].append(m)
                        folds += String(
                            format: "%d,%@,%@,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%@,%@,%g,%g,%g\n", k + 1, heldOut.ct, method,
                            m.voe, m.vd, m.avgD, m.rmsD, m.maxD, m.dice, trainingDice, collapsed ? "yes" : "no",
                            best.parameters.mode.name, best.parameters.bilateralWeight,
                            best.parameters.thetaAlphaMM, best.parameters.thetaBetaHU)
                        say(
                            "fold \(k + 1) \(method): VOE \(String(format: "%.2f", m.voe)) %, Dice \(String(format: "%.4f", m.dice))"
                        )
                    }
                }
                let logs = try ["3D-DSN", "3D-CNN"].map { name in
                    let path = "\(out)/fold\(k + 1)-\(name).csv"
                    return (name: path, text: String(decoding: try readWholeFile(path), as: UTF8.self))
                }
                try writeFileAtomically(try learningCurvesPNG(logs, column: "main"), to: "\(out)/fold\(k + 1)-curves.png")
            }
            let columns = ["VOE[%]", "VD[%]", "AvgD[mm]", "RMSD[mm]", "MaxD[mm]", "Dice"]
            func means(_ row: String) -> [Double] {
                let ms = results[row] ?? []
                let values: [[Double]] = ms.map { [$0.voe, $0.vd, $0.avgD, $0.rmsD, $0.maxD, $0.dice] }
                return (0..<columns.count).map { i in values.map { $0[i] }.reduce(0, +) / Double(max(1, values.count)) }
            }
            var text =
                "method".padding(toLength: 12, withPad: " ", startingAt: 0)
                + columns.map { $0.leftPadded(to: 10) }.joined() + "\n"
            var csv = "method," + columns.joined(separator: ",") + "\n"
            var markdown =
                "| method | " + columns.joined(separator: " | ") + " |\n|---|" + String(repeating: "---|", count: columns.count)
                + "\n"
            for row in rows {
                let v = means(row)
                text +=
                    row.padding(toLength: 12, withPad: " ", startingAt: 0)
                    + v.map { String(format: "%.4f", $0).leftPadded(to: 10) }.joined() + "\n"
                csv += row + "," + v.map { String(format: "%.4f", $0) }.joined(separator: ",") + "\n"
                // Dice is a fraction: two decimals would hide differences of up to 0.01.
                markdown +=
                    "| \(row) | " + v.dropLast().map { String(format: "%.2f", $0) }.joined(separator: " | ")
                    + String(format: " | %.3f |\n", v[v.count - 1])
            }
            text +=
                "\nleave-one-out over \(all.count) cases, means over folds; VD signed; surface distances pooled, 18-connected borders\n"
            text +=
                "collapsed runs (mean training-case Dice < \(Self.collapseDice)): "
                + (collapsedRuns.isEmpty ? "none" : collapsedRuns.joined(separator: ", ")) + "\n"
            for (file, content) in [("table.txt", text), ("table.csv", csv), ("table.md", markdown), ("folds.csv", folds)] {
                try writeFileAtomically(Array(content.utf8), to: "\(out)/\(file)")
            }
            print(text, terminator: "")
        }
    }

    /// A network below this mean Dice on the cases it was trained on has not learnt the liver
    /// (the collapsed runs of docs/training.md found no liver on whole volumes; the runs that
    /// trained fit their training cases with Dice 0.81–0.87).
    static let collapseDice = 0.5

    private func say(_ line: String) {
        if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) }
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

/// One case segmented by a model: its CT, reference, fused probability and thresholded mask.
struct SegmentedCase {
    let ct: Image
    let reference: [UInt8]
    let probability: [Float]
    let thresholded: [UInt8]

    /// The CRF's mask for this case's probability.
    func refined(_ parameters: CRFParameters) throws -> [UInt8] {
        var mask = [UInt8](repeating: 0, count: reference.count)
        try ct.withVolumeInput { volume in
            try probability.withUnsafeBufferPointer { p in
                try mask.withUnsafeMutableBufferPointer { m in
                    try refineWithCRF(volume, probability: p.baseAddress!, parameters: parameters, mask: m.baseAddress!)
                }
            }
        }
        return mask
    }

    /// SLiver07 measures of a mask against the reference.
    func metrics(of mask: [UInt8]) throws -> SegmentationMetrics {
        try mask.withUnsafeBufferPointer { s in
            try reference.withUnsafeBufferPointer { r in
                try evaluateSegmentation(s, r, size: ct.size, spacing: ct.spacing)
            }
        }
    }
}

/// Segments one case with `model`, keeping the probability for the CRF.
func segmentCase(_ model: Model, _ c: (ct: String, mask: String)) throws -> SegmentedCase {
    let ct = try readImage(c.ct)
    let reference = try readImage(c.mask).mask()
    guard reference.count == ct.size.voxelCount else { throw LiversegError.invalidArgument("\(c.mask) does not match \(c.ct)") }
    var probability = [Float](repeating: 0, count: reference.count)
    var mask = [UInt8](repeating: 0, count: reference.count)
    try ct.withVolumeInput { volume in
        try probability.withUnsafeMutableBufferPointer { p in
            try mask.withUnsafeMutableBufferPointer { m in
                try model.segment(volume, options: SegmentationOptions(), mask: m.baseAddress!, probability: p.baseAddress!)
            }
        }
    }
    return SegmentedCase(ct: ct, reference: reference, probability: probability, thresholded: mask)
}

extension String {
    /// The string right-aligned in `width` columns.
    func leftPadded(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
