import ArgumentParser
import LiversegSupport
import LiversegImageIO
import LiversegCRF
import LiversegPipeline
import LiversegTraining

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a 3D DSN on labelled CT and write a model file.",
        discussion: """
            Each --data / --val value is either CT,MASK (two image files) or a folder whose \
            subfolders each hold ct.nii.gz and liver.nii.gz. Volumes are mapped onto the model \
            grid with the segmentation pipeline's own reorientation and resampling. Objective: \
            paper eq. 3 (main cross-entropy + η-weighted branch cross-entropies, weight decay), \
            SGD with momentum; lr ÷ --lr-drop every --lr-step epochs, η × 0.95 every 10 epochs. \
            A checkpoint is written after every epoch; --resume continues a run bit-identically \
            (same arguments and seed). The CSV log has one row per epoch.
            """)

    @Option(help: "Training data: CT,MASK or a folder of case folders (repeatable).")
    var data: [String]

    @Option(help: "Validation data, same forms (repeatable); validation Dice is logged per epoch.")
    var val: [String] = []

    @OptionGroup var training: TrainingOptions

    @Option(help: "The model file to write (after every epoch).")
    var out: String

    @Option(help: "Checkpoint file (default: OUT.checkpoint).")
    var checkpoint: String?

    @Option(help: "Resume from this checkpoint.")
    var resume: String?

    @Option(help: "Per-epoch CSV log.")
    var log: String?

    @Option(help: "Learning-curve PNG of the log's main loss, redrawn after every epoch (needs --log).")
    var curves: String?

    @Flag(help: "No progress bar.")
    var quiet = false

    func run() throws {
        try reportingErrors {
            let c = try training.configuration()
            let progress = ProgressBar(quiet: quiet)
            progress.update("loading", 0)
            let volumes = try LabelledCase.parse(data).map {
                try TrainingVolume(
                    ctPath: $0.ct, maskPath: $0.mask, preprocessing: c.preprocessing, threads: resolvedThreadCount(c.threads))
            }
            let validation = try LabelledCase.parse(val)
            let sampler = try c.sampler(volumes)
            let trainer = try Trainer(configuration: c)
            let checkpointPath = checkpoint ?? out + ".checkpoint"
            if let resume { try trainer.resume(fromCheckpoint: try readWholeFile(resume)) }
            guard curves == nil || log != nil else { throw LiversegError.invalidArgument("--curves needs --log") }
            let epochs = training.epochs
            try trainWithCheckpoints(
                trainer, sampler, epochs: epochs, model: out, checkpoint: checkpointPath, log: log,
                metadata: { epoch in
                    [
                        ("crf", CRFParameters().modelMetadata),
                        ("provenance", training.provenance(c, data: data, epochs: epoch)),
                    ]
                },
                validation: { model in
                    let dice = try validation.map { try validationDice(model, $0) }
                    return dice.isEmpty ? nil : dice.reduce(0, +) / Double(dice.count)
                },
                progress: { epoch, done, total in progress.update("epoch \(epoch)", Double(done) / Double(total)) },
                report: { summary, dice in
                    progress.finish()
                    if let curves, let log {
                        let text = String(decoding: try readWholeFile(log), as: UTF8.self)
                        try writeFileAtomically(try learningCurvesPNG([(log, text)], column: "main"), to: curves)
                    }
                    if !quiet {
                        let rate = Double(c.iterationsPerEpoch) / summary.seconds
                        let validation = dice.map { "  validation Dice " + formatted($0, "%.3f") } ?? ""
                        print(
                            "epoch \(summary.epoch)/\(epochs)  loss \(formatted(summary.total, "%.4f")) (main "
                                + "\(formatted(summary.main, "%.4f")))  \(formatted(summary.seconds, "%.1f")) s  "
                                + "\(formatted(rate, "%.2f")) patches/s\(validation)")
                    }
                })
        }
    }
}

/// The finite numbers of a comma-separated option value; an error names `--option`.
func commaSeparatedNumbers(_ text: String, option: String) throws -> [Double] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    let v = parts.compactMap { Double($0.trimmingWhitespace()) }
    guard !v.isEmpty, v.count == parts.count, v.allSatisfy(\.isFinite) else {
        throw LiversegError.invalidArgument("--\(option) needs comma-separated numbers, got \(text)")
    }
    return v
}

/// Dice of a model's segmentation of one case against its mask, on the CT's grid.
func validationDice(_ model: Model, _ c: LabelledCase) throws -> Double {
    let segmented = try SegmentedCase(c, model: model)
    return try diceCoefficient(segmented.thresholded, segmented.reference)
}

/// The training settings `train` and `loo` share.
struct TrainingOptions: ParsableArguments {
    @Option(help: "Architecture: paper (8,8,16,32,32,32 channels) or small (4,4,8,16,16,16), the paper's kernels.")
    var arch = "paper"

    @Option(parsing: .upToNextOption, help: "Model grid spacing in mm (x y z).")
    var spacing: [Double] = Preprocessing.default.spacing

    @Option(parsing: .upToNextOption, help: "Training patch in model voxels (x y z), multiples of 4.")
    var patch: [Int] = [64, 64, 48]

    @Option(help: "Epochs to run (in total, counting resumed ones).")
    var epochs = 100

    @Option(help: "Patches per epoch.")
    var iterationsPerEpoch = 50

    @Option(help: "Initial learning rate.")
    var lr = 0.01

    @Option(help: "Divide the learning rate by this every --lr-step epochs.")
    var lrDrop = 10.0

    @Option(help: "Epochs between learning-rate drops.")
    var lrStep = 50

    @Option(help: "SGD momentum.")
    var momentum = 0.9

    @Option(help: "Weight decay (eq. 3's λ = weight decay / 2).")
    var weightDecay = 5e-4

    @Flag(help: "Train the plain 3D-CNN: no deep-supervision losses (η = 0).")
    var noDeepSupervision = false

    @Option(help: "Weight initialisation: he, or gaussian (σ = 0.01, the paper's).")
    var initialization = "he"

    @Option(
        help:
            "Geometric augmentation: anatomical (small rotations and scaling, field-of-view crops; never mirrors), elastic (anatomical plus a smooth random warp of each patch), lesions (anatomical plus synthetic tumours painted into the liver of half the patches), symmetric (90° turns and x mirroring, as models before 0.2) or none."
    )
    var augmentation = "anatomical"

    @Option(help: "Grey-value augmentation: range of a random HU shift per patch, LOW,HIGH (e.g. -70,30); with --hu-scale.")
    var huShift: String?

    @Option(help: "Grey-value augmentation: range of a random HU scale per patch, LOW,HIGH (e.g. 0.9,1.1).")
    var huScale: String?

    @Option(help: "Seed of initialisation and patch sampling.")
    var seed: UInt64 = 0

    @Option(
        help:
            "Worker threads; 0 = all cores. The trained weights are the same bits for any count."
    )
    var threads = 0

    func validate() throws {
        guard spacing.count == 3, spacing.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ValidationError("--spacing needs three positive numbers")
        }
        guard patch.count == 3, patch.allSatisfy({ $0 >= 4 && $0 % 4 == 0 }) else {
            throw ValidationError("--patch needs three positive multiples of 4")
        }
        guard epochs >= 1, iterationsPerEpoch >= 1, lr > 0, lrDrop >= 1, lrStep >= 1, weightDecay >= 0,
            (0..<1).contains(momentum)
        else {
            throw ValidationError(
                "--epochs, --iterations-per-epoch, --lr, --lr-step must be positive; --lr-drop ≥ 1; 0 ≤ --momentum < 1")
        }
        guard ["he", "gaussian"].contains(initialization) else { throw ValidationError("--initialization is he or gaussian") }
        guard threads >= 0 else { throw ValidationError("--threads must be 0 (all cores) or more") }
    }

    /// The core configuration these options describe (`Preprocessing.default` but its spacing).
    func configuration() throws -> TrainingConfiguration {
        var preprocessing = Preprocessing.default
        preprocessing.spacing = spacing
        var c = TrainingConfiguration(preprocessing: preprocessing)
        switch arch {
        case "paper": c.architecture = .paper
        case "small":
            c.architecture = .paper
            c.architecture.convChannels = [4, 4, 8, 16, 16, 16]
            c.architecture.mainDeconvChannels = 8
            c.architecture.branch2DeconvChannels = 8
        default: throw LiversegError.invalidArgument("--arch \(arch): use paper or small")
        }
        c.patch = GridSize(x: patch[0], y: patch[1], z: patch[2])
        c.iterationsPerEpoch = iterationsPerEpoch
        c.learningRate = lr
        c.learningRateDrop = lrDrop
        c.learningRateStepEpochs = lrStep
        c.momentum = momentum
        c.weightDecay = weightDecay
        c.deepSupervision = !noDeepSupervision
        c.initialization = initialization == "he" ? .he : .gaussian(sigma: 0.01)
        c.seed = seed
        c.threads = threads
        guard let spatial = SpatialAugmentation.presets.first(where: { $0.name == augmentation }) else {
            throw LiversegError.invalidArgument(
                "--augmentation \(augmentation): use \(SpatialAugmentation.presets.map(\.name).joined(separator: ", "))")
        }
        c.spatialAugmentation = spatial.augmentation
        if huShift != nil || huScale != nil {
            func range(_ text: String?, _ name: String, _ identity: Double) throws -> ClosedRange<Double> {
                guard let text else { return identity...identity }
                let v = try commaSeparatedNumbers(text, option: name)
                guard v.count == 2, v[0] <= v[1] else {
                    throw LiversegError.invalidArgument("--\(name) needs LOW,HIGH with LOW ≤ HIGH, got \(text)")
                }
                return v[0]...v[1]
            }
            let scale = try range(huScale, "hu-scale", 1)
            guard scale.lowerBound > 0 else {
                throw LiversegError.invalidArgument("--hu-scale must be positive, got \(huScale ?? "")")
            }
            c.intensityAugmentation = IntensityAugmentation(shiftHU: try range(huShift, "hu-shift", 0), scale: scale)
        }
        return c
    }

    /// The model file's "provenance" section.
    func provenance(_ c: TrainingConfiguration, data: [String], epochs: Int) -> JSONValue {
        .object(
            [
                ("trainer", .string("liverseg train")), ("data", .array(data.map { .string($0) })),
                ("architecture", .string(arch)), ("epochs", .number(Double(epochs))),
                ("iterations_per_epoch", .number(Double(c.iterationsPerEpoch))),
                ("patch_xyz", .array(patch.map { .number(Double($0)) })), ("learning_rate", .number(c.learningRate)),
                ("lr_drop", .number(c.learningRateDrop)), ("lr_step_epochs", .number(Double(c.learningRateStepEpochs))),
                ("momentum", .number(c.momentum)), ("weight_decay", .number(c.weightDecay)),
                ("deep_supervision", .bool(c.deepSupervision)), ("initialization", .string(initialization)),
                ("augmentation", .string(augmentation)),
                ("seed", .string(String(c.seed))),
            ]
                + (c.intensityAugmentation.map { a in
                    [
                        ("hu_shift", .array([.number(a.shiftHU.lowerBound), .number(a.shiftHU.upperBound)])),
                        ("hu_scale", .array([.number(a.scale.lowerBound), .number(a.scale.upperBound)])),
                    ]
                } ?? []))
    }
}
