import ArgumentParser
import Foundation
import LiversegCore

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment the liver in a CT image and write a 0/1 mask on the same grid.")

    @Argument(help: "The CT image (Hounsfield units).")
    var input: String

    @Argument(help: "The mask to write (uint8, 1 = liver), with the input's geometry.")
    var output: String

    @Option(help: "The model file (.safetensors); default: $LIVERSEG_MODEL, else the bundled liver-default.safetensors.")
    var model: String?

    @Option(help: "Also write the fused liver probability (float32) to this image file.")
    var probability: String?

    @Option(help: "Worker threads; 0 = all cores.")
    var threads = 0

    @Flag(help: "Refine the mask with the dense CRF (paper §2.3), with the model file's CRF parameters (the library's defaults where it has none).")
    var crf = false

    @Option(help: "Mask clean-up after thresholding or the CRF: all (default: largest connected component, 3D and per-slice hole filling), none, or a comma-separated list of largest_component, fill_holes_3d, fill_holes_slices.")
    var postprocess = "all"

    @Option(help: "Write a PNG with axial, coronal and sagittal slices and the mask outline.")
    var preview: String?

    @Flag(help: "No progress bar and no summary.")
    var quiet = false

    func validate() throws {
        guard threads >= 0 else { throw ValidationError("--threads must be 0 (all cores) or more") }
    }

    func run() throws {
        try reportingErrors {
            var options = SegmentationOptions()
            options.threads = threads
            options.postProcessing = try MaskPostProcessing(parsing: postprocess)
            // Refuse an output that cannot be written before the long computation.
            for path in [output] + [probability].compactMap({ $0 }) { try checkImageOutput(path) }
            if let preview { try checkOutputFolder(preview) }
            let progress = ProgressBar(quiet: quiet)
            defer { progress.finish() }
            progress.update("reading", 0)
            let loaded = try Model(contentsOfFile: try model ?? defaultModelPath())
            let ct = try readImage(input)
            var mask = [UInt8](repeating: 0, count: ct.size.voxelCount)
            var probabilities = probability == nil ? [] : [Float](repeating: 0, count: ct.size.voxelCount)
            if crf {
                var parameters = try CRFParameters(modelMetadata: loaded.metadata["crf"])
                parameters.threads = threads
                options.crf = parameters
            }
            let stageNames: [SegmentationStage: String] = [.preprocess: "preprocess", .network: "network",
                                                           .postprocess: "postprocess", .crf: "crf"]
            try ct.withVolumeInput { volume in
                try mask.withUnsafeMutableBufferPointer { m in
                    try probabilities.withUnsafeMutableBufferPointer { p in
                        guard let maskBase = m.baseAddress else { throw LiversegError.internalError("empty mask buffer") }
                        // An empty array may still have a base address: pass NULL unless asked.
                        try loaded.segment(volume, options: options, mask: maskBase,
                                           probability: probability == nil ? nil : p.baseAddress) { fraction, stage in
                            progress.update(stageNames[stage] ?? "", fraction)
                            return true
                        }
                    }
                }
            }
            progress.update("writing", 1)
            // Every output is staged before any is put in place: a failure leaves none of them.
            var files = try stageImage(try ct.withVoxels(mask), to: output)
            if let probability { files += try stageImage(try ct.withVoxels(probabilities), to: probability) }
            if let preview { files.append(try StagedFile(try Preview().render(ct, mask: mask).pngData(), for: preview)) }
            try commitAll(files)
            progress.finish()
            if !quiet {
                let voxels = mask.reduce(0) { $0 + Int($1) }
                let millilitres = Double(voxels) * ct.spacing.reduce(1, *) / 1000
                print("\(output): \(voxels) liver voxels, \(String(format: "%.1f", millilitres)) ml")
            }
        }
    }
}

/// The model used without --model: $LIVERSEG_MODEL, else liver-default.safetensors installed
/// beside the program (PREFIX/share/liverseg/) or in a source tree's models/ folder above it.
func defaultModelPath() throws -> String {
    if let path = ProcessInfo.processInfo.environment["LIVERSEG_MODEL"], !path.isEmpty { return path }
    let name = "liver-default.safetensors"
    var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    var candidates = [folder.appendingPathComponent("../share/liverseg/\(name)").standardized.path]
    for _ in 0..<5 {
        candidates.append(folder.appendingPathComponent("models/\(name)").path)
        folder = folder.deletingLastPathComponent()
    }
    if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
    throw LiversegError.io("no --model given and no default model found (looked at $LIVERSEG_MODEL, \(candidates.joined(separator: ", ")))")
}
