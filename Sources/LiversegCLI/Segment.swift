import ArgumentParser
import LiversegSupport
import LiversegImageIO
import LiversegVolume
import LiversegCRF
import LiversegPipeline

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment the liver in CT images and write 0/1 masks on the same grids.",
        discussion: """
            One case:  liverseg segment ct.nii.gz liver.nii.gz
                       liverseg segment DICOM_FOLDER liver.nii.gz
            A batch:   liverseg segment CT... -o DIR     or     liverseg segment -i IN_DIR -o DIR
            A CT is an image file or a DICOM series: a folder (searched recursively) or one file of \
            the series. In a folder with several series the largest axial CT series is read and a \
            note names it and the others; --series UID reads another. -i takes a folder whose image \
            files and subfolders (DICOM series) are the cases. A batch loads the model once and \
            writes each mask as DIR/<the input's file name> (the input's format; for DICOM, the \
            folder's or file's name + .nii.gz). A failed case is reported and the batch goes on; a \
            summary follows, and the exit status is the first failed case's (0 when every case succeeded). Every output is \
            checked before any computation and written atomically. Warnings about inputs that do not \
            look like CT in Hounsfield units go to standard error and never stop a run.
            """)

    @Argument(
        help:
            "The CT (Hounsfield units: an image file, or a DICOM folder or file) and the mask to write (uint8, 1 = liver); with --output-dir, the CTs."
    )
    var paths: [String] = []

    @Option(
        name: [.customShort("i"), .customLong("input-dir")],
        help: "Batch: segment every image file and every subfolder (a DICOM series) in this folder (with --output-dir).")
    var inputDir: String?

    @Option(help: "DICOM: read the series with this SeriesInstanceUID (one case only).")
    var series: String?

    @Option(name: [.customShort("o"), .customLong("output-dir")], help: "Batch: the folder for the masks (created if missing).")
    var outputDir: String?

    @Option(help: "The model file (.safetensors); default: $LIVERSEG_MODEL, else the bundled liver-default.safetensors.")
    var model: String?

    @Option(help: "Also write the fused liver probability (float32) to this image file (one case only).")
    var probability: String?

    @Option(
        help:
            "Write liver statistics as JSON: volume (ml), HU mean/sd/median inside the mask, bounding box (voxels, mm), connected components. A batch writes one document with every case."
    )
    var statistics: String?

    @Option(help: "Worker threads; 0 = all cores.")
    var threads = 0

    @Flag(
        inversion: .prefixedNo,
        help:
            "Refine the mask with the dense CRF (paper §2.3), with the model file's CRF parameters (the library's defaults where it has none); on by default, --no-crf thresholds the network's probability instead (IRCADb-17 on 2 threads: 0.7 s instead of 6–7 s)."
    )
    var crf = SegmentationOptions().crf.isOn

    @Option(
        help:
            "Mask clean-up after thresholding or the CRF: all (default: largest connected component, 3D and per-slice hole filling), none, or a comma-separated list of largest_component, fill_holes_3d, fill_holes_slices."
    )
    var postprocess = "all"

    @Option(help: "Write a PNG with axial, coronal and sagittal slices and the mask outline (one case only).")
    var preview: String?

    @Flag(help: "No progress bar and no summary.")
    var quiet = false

    func validate() throws {
        guard threads >= 0 else { throw ValidationError("--threads must be 0 (all cores) or more") }
        if outputDir == nil {
            guard inputDir == nil else { throw ValidationError("--input-dir needs --output-dir") }
            guard paths.count == 2 else {
                throw ValidationError("give a CT and the mask to write, or CT images with --output-dir DIR")
            }
        } else {
            guard probability == nil, preview == nil, series == nil else {
                throw ValidationError("--probability, --preview and --series are for one case: not with --output-dir")
            }
            guard !paths.isEmpty || inputDir != nil else {
                throw ValidationError("give CT images or --input-dir with --output-dir")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            var options = SegmentationOptions()
            options.threads = threads
            options.postProcessing = try MaskPostProcessing(parsing: postprocess)
            options.crf = crf ? .modelFile : .off
            if let outputDir { try runBatch(into: outputDir, options: options) } else { try runOne(options: options) }
        }
    }

    private func runOne(options: SegmentationOptions) throws {
        let (input, output) = (paths[0], paths[1])
        // Refuse an output that cannot be written before the long computation.
        for path in [output] + [probability].compactMap({ $0 }) { try checkImageOutput(path) }
        for path in [preview, statistics].compactMap({ $0 }) { try checkOutputFolder(path) }
        let loaded = try Model(contentsOfFile: try model ?? defaultModelPath())
        let result = try segmentCase(input, with: loaded, options: options, probability: probability != nil)
        // Every output is staged before any is put in place: a failure leaves none of them.
        var files = try stageImage(try result.ct.withVoxels(result.mask), to: output)
        if let probability { files += try stageImage(try result.ct.withVoxels(result.probabilities), to: probability) }
        if let preview {
            files.append(try StagedFile(try Preview().render(result.ct, mask: result.mask).pngData(), for: preview))
        }
        if let statistics {
            files.append(try StagedFile(Array((caseReport(result, output: output).serialized + "\n").utf8), for: statistics))
        }
        try commitAll(files)
        if !quiet { print(summaryLine(result, output: output)) }
    }

    private func runBatch(into folder: String, options: SegmentationOptions) throws {
        var inputs = paths
        if let inputDir { inputs += try batchInputs(in: inputDir, excluding: folder) }
        guard !inputs.isEmpty else {
            throw LiversegError.invalidArgument("no image files or DICOM folders in \(inputDir ?? "the arguments")")
        }
        let outputs = inputs.map { folder + "/" + batchOutputName(for: $0) }
        for (input, output) in zip(inputs, outputs)
        where standardizedPath(input) == standardizedPath(output) {
            throw LiversegError.invalidArgument("the mask of \(input) would replace it: choose another --output-dir")
        }
        if let duplicate = Dictionary(grouping: outputs, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw LiversegError.invalidArgument("two inputs would both write \(duplicate)")
        }
        try createFolders(folder)
        for output in outputs { try checkImageOutput(output) }
        if let statistics { try checkOutputFolder(statistics) }
        let loaded = try Model(contentsOfFile: try model ?? defaultModelPath())
        var reports: [JSONValue] = [], failures: [(input: String, error: LiversegError)] = []
        for (n, (input, output)) in zip(inputs, outputs).enumerated() {
            do {
                let result = try segmentCase(
                    input, with: loaded, options: options, probability: false,
                    label: "\(n + 1)/\(inputs.count) ")
                let report = try caseReport(result, output: output)
                try commitAll(try stageImage(try result.ct.withVoxels(result.mask), to: output))
                reports.append(report)
                if !quiet { print(summaryLine(result, output: output)) }
            } catch let error as LiversegError {
                printError("\(input): \(error.description)")
                failures.append((input, error))
                reports.append(.object([("input", .string(input)), ("error", .string(error.description))]))
            }
        }
        if let statistics { try writeFileAtomically(Array((JSONValue.array(reports).serialized + "\n").utf8), to: statistics) }
        if !quiet { print("\(inputs.count - failures.count) of \(inputs.count) cases segmented into \(folder)") }
        if let first = failures.first {
            printError("\(failures.count) of \(inputs.count) cases failed: \(failures.map(\.input).joined(separator: ", "))")
            throw ExitCode(LiversegCLI.exitCode(for: first.error))
        }
    }

    /// One case read, checked for plausibility and segmented.
    private func segmentCase(
        _ input: String, with loaded: Model, options: SegmentationOptions, probability: Bool,
        label: String = ""
    ) throws -> CaseResult {
        let progress = ProgressBar(quiet: quiet)
        defer { progress.finish() }
        let ct = try CTInput(input, series: series, threads: threads) { progress.update(label + "reading", $0) }.image
        let warnings = plausibilityWarnings(ct)
        for warning in warnings { printError("warning: \(input): \(warning)") }
        let stageNames: [SegmentationStage: String] = [
            .preprocess: "preprocess", .network: "network",
            .postprocess: "postprocess", .crf: "crf",
        ]
        let segmentation = try ct.withVolumeInput { volume in
            try loaded.segment(volume, options: options, keepProbability: probability) { fraction, stage in
                progress.update(label + (stageNames[stage] ?? ""), fraction)
                return true
            }
        }
        let (mask, probabilities) = (segmentation.mask, segmentation.probability ?? [])
        progress.update(label + "writing", 1)
        return CaseResult(input: input, ct: ct, mask: mask, probabilities: probabilities, warnings: warnings)
    }

    private func summaryLine(_ result: CaseResult, output: String) -> String {
        let voxels = result.mask.reduce(0) { $0 + Int($1) }
        let millilitres = Double(voxels) * result.ct.spacing.reduce(1, *) / 1000
        return "\(output): \(voxels) liver voxels, \(formatted(millilitres, "%.1f")) ml"
    }

    private func caseReport(_ result: CaseResult, output: String) throws -> JSONValue {
        .object(
            [
                ("input", .string(result.input)), ("mask", .string(output)),
                ("warnings", .array(result.warnings.map { .string($0) })),
            ]
                + (try liverStatistics(ct: result.ct, mask: result.mask)))
    }
}

/// A segmented case: the CT read, its mask (and probability when asked), the warnings given.
struct CaseResult {
    let input: String
    let ct: Image
    let mask: [UInt8]
    let probabilities: [Float]
    let warnings: [String]
}

/// The model used without --model: $LIVERSEG_MODEL, else liver-default.safetensors installed
/// beside the program (PREFIX/share/liverseg/) or in a source tree's models/ folder above it.
func defaultModelPath() throws -> String {
    if let path = environmentValue("LIVERSEG_MODEL"), !path.isEmpty { return path }
    let name = "liver-default.safetensors"
    let program = resolvedPath("/proc/self/exe") ?? resolvedPath(CommandLine.arguments[0]) ?? CommandLine.arguments[0]
    var folder = parentFolder(standardizedPath(program))
    var candidates = [standardizedPath(folder + "/../share/liverseg/\(name)")]
    for _ in 0..<5 {
        candidates.append((folder == "/" ? "" : folder) + "/models/\(name)")
        folder = parentFolder(folder)
    }
    if let found = candidates.first(where: pathExists) { return found }
    throw LiversegError.io(
        "no --model given and no default model found (looked at $LIVERSEG_MODEL, \(candidates.joined(separator: ", ")))")
}
