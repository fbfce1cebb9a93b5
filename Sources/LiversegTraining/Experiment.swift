import LiversegSupport
import LiversegImageIO
import LiversegVolume
import LiversegCRF
import LiversegPipeline

/// A CT with its reference liver mask, by file path.
public struct LabelledCase: Equatable, Sendable {
    /// The CT image file.
    public var ct: String
    /// The mask image file on the CT's grid (non-zero = liver).
    public var mask: String

    /// A case from its two files.
    public init(ct: String, mask: String) {
        self.ct = ct
        self.mask = mask
    }

    /// The cases named by `values`: each either "CT,MASK" (two image files) or a folder whose
    /// subfolders each hold ct.nii.gz and liver.nii.gz (in name order).
    public static func parse(_ values: [String]) throws -> [LabelledCase] {
        var result: [LabelledCase] = []
        for value in values {
            let parts = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if parts.count == 2 {
                result.append(LabelledCase(ct: parts[0], mask: parts[1]))
                continue
            }
            guard isFolder(value) else {
                throw LiversegError.invalidArgument("\(value) is neither CT,MASK nor a folder")
            }
            let found = try folderEntries(value).sorted().compactMap { name in
                let c = LabelledCase(ct: "\(value)/\(name)/ct.nii.gz", mask: "\(value)/\(name)/liver.nii.gz")
                return pathExists(c.ct) && pathExists(c.mask) ? c : nil
            }
            guard !found.isEmpty else {
                throw LiversegError.invalidArgument("\(value) has no case folders with ct.nii.gz and liver.nii.gz")
            }
            result += found
        }
        return result
    }
}

/// One case segmented by a model: its CT, reference, fused probability and thresholded mask
/// (the model's defaults), ready to be refined and scored.
public struct SegmentedCase {
    /// The CT as read.
    public let ct: Image
    /// The reference mask, 0/1 on the CT's grid.
    public let reference: [UInt8]
    /// The fused liver probability on the CT's grid.
    public let probability: [Float]
    /// The mask `segment` gives with default options.
    public let thresholded: [UInt8]

    /// A case from its parts (tests build probabilities directly).
    init(ct: Image, reference: [UInt8], probability: [Float], thresholded: [UInt8]) {
        (self.ct, self.reference, self.probability, self.thresholded) = (ct, reference, probability, thresholded)
    }

    /// Reads `labelled` and segments it with `model`.
    public init(_ labelled: LabelledCase, model: Model) throws {
        let ct = try readImage(labelled.ct), reference = try readImage(labelled.mask).mask()
        guard reference.count == ct.size.voxelCount else {
            throw LiversegError.invalidArgument("\(labelled.mask) does not match \(labelled.ct)")
        }
        try self.init(ct: ct, reference: reference, model: model)
    }

    /// Segments `ct`, whose reference mask is `reference`, with `model`.
    public init(ct: Image, reference: [UInt8], model: Model) throws {
        var thresholding = SegmentationOptions()
        thresholding.crf = .off
        let segmentation = try ct.withVolumeInput { try model.segment($0, options: thresholding, keepProbability: true) }
        self.ct = ct
        self.reference = reference
        probability = segmentation.probability ?? []
        thresholded = segmentation.mask
    }

    /// The CRF's mask for this case's probability.
    public func refined(_ parameters: CRFParameters) throws -> [UInt8] {
        try ct.withVolumeInput { try refineWithCRF($0, probability: probability, parameters: parameters) }
    }

    /// SLiver07 measures of a mask against the reference.
    public func metrics(of mask: [UInt8]) throws -> SegmentationMetrics {
        try evaluateSegmentation(mask, reference, size: ct.size, spacing: ct.spacing)
    }
}

/// The CRF setting of `grid` with the lowest mean VOE over `cases` (the first of equals),
/// and that VOE. The paper's protocol chooses it on training cases only.
public func bestCRF(_ grid: [CRFParameters], on cases: [SegmentedCase]) throws -> (parameters: CRFParameters, meanVOE: Double) {
    guard !grid.isEmpty, !cases.isEmpty else {
        throw LiversegError.invalidArgument("the CRF search needs at least one setting and one case")
    }
    var best = (parameters: grid[0], meanVOE: Double.infinity)
    for parameters in grid {
        let voe = try cases.map { try $0.metrics(of: $0.refined(parameters)).voe }.reduce(0, +) / Double(cases.count)
        if voe < best.meanVOE { best = (parameters, voe) }
    }
    return best
}

/// Trains `trainer` until it has done `epochs` epochs. After every epoch it writes the model
/// (with `metadata(epoch)`), the checkpoint and the CSV log, each atomically, so a run that is
/// stopped resumes from its checkpoint with a log that matches it: rows after the trainer's
/// epoch count are dropped on the way in. `validation` (optional) scores each epoch's model;
/// `report` receives each epoch's summary and that score.
public func trainWithCheckpoints(
    _ trainer: Trainer, _ sampler: PatchSampler, epochs: Int, model out: String,
    checkpoint: String, log: String?,
    metadata: (Int) -> [(String, JSONValue)],
    validation: (Model) throws -> Double? = { _ in nil },
    progress: (Int, Int, Int) -> Void = { _, _, _ in },
    report: (EpochSummary, Double?) throws -> Void
) throws {
    var csv = "epoch,seconds,loss,main,branch1,branch2,validation_dice\n"
    if let log, trainer.epochsDone > 0, let old = try? String(decoding: readWholeFile(log), as: UTF8.self) {
        for line in old.split(separator: "\n").dropFirst() {
            if let epoch = Int(line.prefix { $0 != "," }), epoch <= trainer.epochsDone { csv += line + "\n" }
        }
    }
    if trainer.epochsDone >= epochs {
        // A run resumed after its last epoch writes its model again (the same bytes: weights
        // and metadata depend only on the checkpoint), so a checkout that keeps checkpoints
        // but not model files gets its models back by rerunning the runs.
        try writeFileAtomically(trainer.model(extraMetadata: metadata(trainer.epochsDone)).fileBytes(), to: out)
    }
    while trainer.epochsDone < epochs {
        let epoch = trainer.epochsDone + 1
        let summary = try trainer.trainEpoch(sampler) { done, total, _ in progress(epoch, done, total) }
        let model = try trainer.model(extraMetadata: metadata(epoch))
        let dice = try validation(model)
        try writeFileAtomically(model.fileBytes(), to: out)
        let losses = [summary.total, summary.main, summary.branch1, summary.branch2].map { formatted($0, "%.6f") }
        csv +=
            ([String(epoch), formatted(summary.seconds, "%.1f")] + losses + [dice.map { formatted($0, "%.4f") } ?? ""])
            .joined(separator: ",") + "\n"
        if let log { try writeFileAtomically(Array(csv.utf8), to: log) }
        try writeFileAtomically(trainer.checkpointBytes(), to: checkpoint)
        try report(summary, dice)
    }
}
