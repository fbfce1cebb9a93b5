import LiversegSupport
import LiversegImageIO
import LiversegCRF
import LiversegPipeline

/// The paper's Table 1 protocol over labelled cases: for each case, a 3D-CNN (no deep
/// supervision) and a 3D-DSN trained on the other cases, the CRF setting with the lowest
/// mean VOE on those training cases (never the held-out one), then the held-out case scored
/// with and without it.
public struct LeaveOneOutExperiment {
    /// The rows of the table, in order.
    public static let methods = ["3D-CNN", "3D-DSN", "3D-CNN+CRF", "3D-DSN+CRF"]
    /// A network below this mean Dice on the cases it was trained on has not learnt the liver
    /// (the collapsed runs of docs/training.md found no liver on whole volumes; the runs that
    /// trained fit their training cases with Dice 0.81–0.87). Its rows stay in the means.
    public static let collapseDice = 0.5

    /// At least two cases.
    public var cases: [LabelledCase]
    /// Training settings of every fold (deep supervision is set per arm).
    public var configuration: TrainingConfiguration
    /// Epochs per fold and arm.
    public var epochs: Int
    /// The CRF settings searched.
    public var crfGrid: [CRFParameters]
    /// Where each fold's models, checkpoints, logs and curves go (fold<k>-<arm>.*); an
    /// unfinished run resumes from its checkpoint there.
    public var folder: String
    /// The model file's "provenance" section for a configuration, training CT paths and epochs.
    public var provenance: (TrainingConfiguration, [String], Int) -> JSONValue
    /// Progress lines.
    public var say: (String) -> Void

    /// An experiment; `run` does the work.
    public init(
        cases: [LabelledCase], configuration: TrainingConfiguration, epochs: Int, crfGrid: [CRFParameters], folder: String,
        provenance: @escaping (TrainingConfiguration, [String], Int) -> JSONValue, say: @escaping (String) -> Void = { _ in }
    ) {
        (self.cases, self.configuration, self.epochs, self.crfGrid) = (cases, configuration, epochs, crfGrid)
        (self.folder, self.provenance, self.say) = (folder, provenance, say)
    }

    /// Trains, searches and scores every fold; each case is read and mapped onto the model
    /// grid once.
    public func run() throws -> LeaveOneOutResult {
        guard cases.count >= 2 else {
            throw LiversegError.invalidArgument("leave-one-out needs at least 2 cases, got \(cases.count)")
        }
        guard !crfGrid.isEmpty else { throw LiversegError.invalidArgument("the CRF grid is empty") }
        try createFolders(folder)
        let threads = resolvedThreadCount(configuration.threads)
        let volumes = try cases.map {
            try TrainingVolume(ctPath: $0.ct, maskPath: $0.mask, preprocessing: configuration.preprocessing, threads: threads)
        }
        let images = try cases.map { c -> (ct: Image, reference: [UInt8]) in
            let ct = try readImage(c.ct), reference = try readImage(c.mask).mask()
            guard reference.count == ct.size.voxelCount else {
                throw LiversegError.invalidArgument("\(c.mask) does not match \(c.ct)")
            }
            return (ct, reference)
        }
        var result = LeaveOneOutResult(caseCount: cases.count)
        for k in cases.indices {
            let trainingCases = cases.indices.filter { $0 != k }
            for deepSupervision in [false, true] {
                let arm = deepSupervision ? "3D-DSN" : "3D-CNN"
                var c = configuration
                c.deepSupervision = deepSupervision
                let model = try trainFold(k, arm: arm, configuration: c, on: trainingCases, volumes: volumes)
                let trainingOutputs = try trainingCases.map {
                    try SegmentedCase(ct: images[$0].ct, reference: images[$0].reference, model: model)
                }
                let trainingDice =
                    try trainingOutputs.map { try $0.metrics(of: $0.thresholded).dice }.reduce(0, +)
                    / Double(trainingOutputs.count)
                let collapsed = trainingDice < Self.collapseDice
                if collapsed {
                    say(
                        "warning: fold \(k + 1) \(arm) collapsed: mean Dice \(formatted(trainingDice, "%.3f")) on its own training cases"
                    )
                }
                let crf = try bestCRF(crfGrid, on: trainingOutputs).parameters
                let test = try SegmentedCase(ct: images[k].ct, reference: images[k].reference, model: model)
                for (method, mask) in [(arm, test.thresholded), (arm + "+CRF", try test.refined(crf))] {
                    let m = try test.metrics(of: mask)
                    result.folds.append(
                        LeaveOneOutResult.Fold(
                            fold: k + 1, heldOut: cases[k].ct, method: method, metrics: m, trainingDice: trainingDice,
                            collapsed: collapsed, crf: crf))
                    say("fold \(k + 1) \(method): VOE \(formatted(m.voe, "%.2f")) %, Dice \(formatted(m.dice, "%.4f"))")
                }
            }
            let logs = try ["3D-DSN", "3D-CNN"].map { arm in
                let path = "\(folder)/fold\(k + 1)-\(arm).csv"
                return (name: path, text: String(decoding: try readWholeFile(path), as: UTF8.self))
            }
            try writeFileAtomically(try learningCurvesPNG(logs, column: "main"), to: "\(folder)/fold\(k + 1)-curves.png")
        }
        return result
    }

    /// Trains (or resumes) fold `k`'s `arm` on `trainingCases` and writes its model file.
    private func trainFold(
        _ k: Int, arm: String, configuration c: TrainingConfiguration, on trainingCases: [Int], volumes: [TrainingVolume]
    ) throws -> Model {
        let trainer = try Trainer(configuration: c)
        let sampler = try c.sampler(trainingCases.map { volumes[$0] })
        let stem = "\(folder)/fold\(k + 1)-\(arm)"
        if let saved = try? readWholeFile(stem + ".checkpoint") {
            try trainer.resume(fromCheckpoint: saved)
            say("fold \(k + 1)/\(cases.count) \(arm): resuming after epoch \(trainer.epochsDone)")
        }
        let data = trainingCases.map { cases[$0].ct }
        let metadata = { (epoch: Int) in [("provenance", provenance(c, data, epoch))] }
        try trainWithCheckpoints(
            trainer, sampler, epochs: epochs, model: stem + ".safetensors", checkpoint: stem + ".checkpoint",
            log: stem + ".csv", metadata: metadata,
            report: { summary, _ in
                say(
                    "fold \(k + 1)/\(cases.count) \(arm) epoch \(summary.epoch)/\(epochs) loss \(formatted(summary.total, "%.4f")) main \(formatted(summary.main, "%.4f"))"
                )
            })
        let model = try trainer.model(extraMetadata: metadata(epochs))
        // A run finished earlier is re-scored with today's model-building rules.
        try writeFileAtomically(model.fileBytes(), to: stem + ".safetensors")
        return model
    }
}

/// The measures of a leave-one-out experiment and its tables.
public struct LeaveOneOutResult {
    /// One held-out case scored by one method.
    public struct Fold {
        /// 1-based fold number.
        public var fold: Int
        /// The held-out CT's path.
        public var heldOut: String
        /// One of `LeaveOneOutExperiment.methods`.
        public var method: String
        /// The held-out case's measures.
        public var metrics: SegmentationMetrics
        /// The fold network's mean Dice on its own training cases.
        public var trainingDice: Double
        /// Whether that is below `LeaveOneOutExperiment.collapseDice`.
        public var collapsed: Bool
        /// The CRF setting chosen on the training cases.
        public var crf: CRFParameters
    }

    /// The number of cases (= folds).
    public var caseCount: Int
    /// Every fold's rows, in order.
    public var folds: [Fold] = []

    /// The table's columns.
    public static let columns = ["VOE[%]", "VD[%]", "AvgD[mm]", "RMSD[mm]", "MaxD[mm]", "Dice"]

    /// Means over folds of `method`'s measures, in `columns` order.
    public func means(_ method: String) -> [Double] {
        let values = folds.filter { $0.method == method }.map { f -> [Double] in
            let m = f.metrics
            return [m.voe, m.vd, m.avgD, m.rmsD, m.maxD, m.dice]
        }
        return (0..<Self.columns.count).map { i in values.map { $0[i] }.reduce(0, +) / Double(max(1, values.count)) }
    }

    /// "fold arm" of each collapsed network.
    public var collapsedRuns: [String] {
        var seen: [String] = []
        for f in folds where f.collapsed && !f.method.hasSuffix("+CRF") { seen.append("fold \(f.fold) \(f.method)") }
        return seen
    }

    /// The table as aligned text, with the protocol's footnotes.
    public var text: String {
        var text =
            "method".rightPadded(to: 12) + Self.columns.map { $0.leftPadded(to: 10) }.joined()
            + "\n"
        for method in LeaveOneOutExperiment.methods {
            text +=
                method.rightPadded(to: 12)
                + means(method).map { formatted($0, "%.4f").leftPadded(to: 10) }.joined() + "\n"
        }
        text +=
            "\nleave-one-out over \(caseCount) cases, means over folds; VD signed; surface distances pooled, 18-connected borders\n"
        let collapsed = collapsedRuns
        text +=
            "collapsed runs (mean training-case Dice < \(LeaveOneOutExperiment.collapseDice)): "
            + (collapsed.isEmpty ? "none" : collapsed.joined(separator: ", ")) + "\n"
        return text
    }

    /// The table as CSV (four decimals).
    public var csv: String {
        "method," + Self.columns.joined(separator: ",") + "\n"
            + LeaveOneOutExperiment.methods.map { method in
                method + "," + means(method).map { formatted($0, "%.4f") }.joined(separator: ",") + "\n"
            }.joined()
    }

    /// The table in Markdown: two decimals, Dice three (a fraction: two would hide
    /// differences of up to 0.01).
    public var markdown: String {
        "| method | " + Self.columns.joined(separator: " | ") + " |\n|---|"
            + String(repeating: "---|", count: Self.columns.count) + "\n"
            + LeaveOneOutExperiment.methods.map { method in
                let v = means(method)
                return "| \(method) | " + v.dropLast().map { formatted($0, "%.2f") }.joined(separator: " | ")
                    + " | " + formatted(v[v.count - 1], "%.3f") + " |\n"
            }.joined()
    }

    /// One row per fold and method, with the CRF setting chosen.
    public var foldsCSV: String {
        "fold,held_out,method,voe,vd,avgd,rmsd,maxd,dice,training_dice,collapsed,crf_mode,crf_mu1,crf_theta_alpha_mm,crf_theta_beta_hu\n"
            + folds.map { f in
                let m = f.metrics
                let measures = [m.voe, m.vd, m.avgD, m.rmsD, m.maxD, m.dice, f.trainingDice].map { formatted($0, "%.4f") }
                let crf = [f.crf.bilateralWeight, f.crf.thetaAlphaMM, f.crf.thetaBetaHU].map { formatted($0, "%g") }
                return ([String(f.fold), f.heldOut, f.method] + measures + [f.collapsed ? "yes" : "no", f.crf.mode.name] + crf)
                    .joined(separator: ",") + "\n"
            }.joined()
    }
}
