import LiversegSupport
import LiversegVolume
import LiversegNetwork
import LiversegCRF

/// Tunables of `segment`.
public struct SegmentationOptions: Sendable {
    /// Worker threads; 0 = all cores.
    public var threads: Int = 0
    /// Largest network tile in model-grid voxels, halo included.
    public var maxTileVoxels: Int = SegmentationOptions.defaultMaxTileVoxels
    /// Fused probability at or above this is liver (when `crf` is `.off`).
    public var threshold: Float = 0.5
    /// Whether the mask comes from the dense CRF on the fused probability (paper §2.3) and
    /// with which parameters. On by default: over the leave-one-out folds of the bundled
    /// model's recipe it gained more held-out Dice than the rule for a default asks
    /// (docs/training.md, session 8).
    public var crf = CRFChoice.modelFile
    /// Clean-up of the mask after thresholding or the CRF.
    public var postProcessing = MaskPostProcessing.all

    /// 8 Mi voxels: about 1.5 GB of activations for the paper's network.
    public static let defaultMaxTileVoxels = 8 << 20

    /// Default options.
    public init() {}
}

/// Whether and how `segment` refines the mask with the dense CRF.
public enum CRFChoice: Sendable {
    /// No CRF: the fused probability is thresholded at `SegmentationOptions.threshold`.
    case off
    /// The CRF with the model file's "crf" section (the library's defaults for keys it
    /// lacks), on `SegmentationOptions.threads` threads.
    case modelFile
    /// The CRF with these parameters.
    case parameters(CRFParameters)

    /// Whether the CRF runs.
    public var isOn: Bool { if case .off = self { false } else { true } }
}

/// Share of the progress bar given to each stage (network dominates; the CRF, when run,
/// takes its share from the network's).
private let preprocessShare = 0.05, networkShare = 0.9, crfShare = 0.15

/// What `segment` returns: the mask on the input grid and, when asked for, the fused liver
/// probability there.
public struct Segmentation: Sendable {
    /// 0/1 per input voxel, x fastest.
    public var mask: [UInt8]
    /// The eq. 4 fused liver probability per input voxel (an ensemble's: the mean over its
    /// networks), when `keepProbability` was set.
    public var probability: [Float]?
}

extension Model {
    /// Runs the whole pipeline on `volume`: reorient + resample + normalise, tiled network,
    /// eq. 4 fusion, resampling back (for an ensemble: each network on its own grid, then the
    /// mean of their probabilities), then the dense CRF — or thresholding when
    /// `options.crf` is `.off` — and `options.postProcessing`. `progress` may cancel (the call
    /// then throws `LiversegError.cancelled`).
    public func segment(
        _ volume: VolumeInput, options: SegmentationOptions = SegmentationOptions(), keepProbability: Bool = false,
        progress: ProgressHandler? = nil
    ) throws -> Segmentation {
        // The borrowed-buffer `segment` validates the volume; here only the sizes are needed.
        let size = volume.size
        let voxels = try checkedProduct([size.x, size.y, size.z], what: "volume dims")
        guard size.x >= 1, size.y >= 1, size.z >= 1 else {
            throw LiversegError.invalidArgument("volume dims \(size) must all be at least 1")
        }
        var mask = [UInt8](repeating: 0, count: voxels)
        var probability = [Float](repeating: 0, count: keepProbability ? voxels : 0)
        try mask.withUnsafeMutableBufferPointer { m in
            try probability.withUnsafeMutableBufferPointer { p in
                // An empty array may still have a base address: pass nil unless asked.
                try segment(
                    volume, options: options, mask: m.baseAddress!, probability: keepProbability ? p.baseAddress : nil,
                    progress: progress)
            }
        }
        return Segmentation(mask: mask, probability: keepProbability ? probability : nil)
    }

    /// `segment` into borrowed buffers of volume.size voxels (the C API's, without copies):
    /// writes `mask` and, if given, the fused liver probability.
    package func segment(
        _ volume: VolumeInput, options: SegmentationOptions,
        mask: UnsafeMutablePointer<UInt8>, probability: UnsafeMutablePointer<Float>?,
        progress: ProgressHandler? = nil
    ) throws {
        func report(_ fraction: Double, _ stage: SegmentationStage) throws {
            if let progress, !progress(min(1, fraction), stage) { throw LiversegError.cancelled }
        }
        guard options.threshold > 0, options.threshold < 1 else {
            throw LiversegError.invalidArgument("threshold \(options.threshold) must be in (0, 1)")
        }
        let threads = resolvedThreadCount(options.threads)
        let crf: CRFParameters?
        switch options.crf {
        case .off: crf = nil
        case .modelFile:
            var fromFile = try CRFParameters(modelMetadata: metadata["crf"])
            fromFile.threads = options.threads
            crf = fromFile
        case .parameters(let given): crf = given
        }
        try volume.validate()
        try report(0, .preprocess)
        // Each network's share of the bar, by its grid's voxels (what its time grows with):
        // its preprocessing, then its network pass.
        let networkPart = networkShare - (crf == nil ? 0 : crfShare)
        let grids = try networks.map { try ModelGrid(volume: volume, preprocessing: $0.preprocessing) }
        let allVoxels = Double(grids.reduce(0) { $0 + $1.size.voxelCount })
        let voxelShares = grids.map { Double($0.size.voxelCount) / allVoxels }
        var parts: [(grid: ModelGrid, fused: FloatBuffer)] = []
        for (index, (member, grid)) in zip(networks, grids).enumerated() {
            let begin = (preprocessShare + networkPart) * voxelShares[..<index].reduce(0, +)
            let span = (preprocessShare + networkPart) * voxelShares[index]
            let preprocessPart = span * preprocessShare / (preprocessShare + networkPart)
            Log.write(
                .info,
                "input \(volume.size), network \(index + 1) of \(networks.count): model grid \(grid.size) (axes \(grid.mapping.sourceAxis), flipped \(grid.mapping.flipped)), \(threads) threads"
            )
            let normalised = try FloatBuffer(count: grid.size.voxelCount, zeroed: false)
            try grid.preprocess(volume, member.preprocessing, into: normalised.pointer, threads: threads) { f in
                try report(begin + preprocessPart * f, .preprocess)
            }
            let fused = try member.fusedProbability(normalised, size: grid.size, options: options, threads: threads) { f in
                try report(begin + preprocessPart + (span - preprocessPart) * f, .network)
            }
            parts.append((grid, fused))
        }
        let onInput = InputGridProbability(parts: parts, inputSize: volume.size)
        let networkEnd = preprocessShare + networkPart
        try report(networkEnd, .postprocess)

        let voxels = volume.size.voxelCount
        // Mapping back takes the first half of the post-processing share, the rest the second.
        let mapBackProgress = { (f: Double) in try report(networkEnd + 0.025 * f, .postprocess) }
        // The mask at the threshold, or at the CRF's own 0.5 to find where the CRF runs.
        let threshold = crf == nil ? options.threshold : 0.5
        if let probability {
            try onInput.write(into: probability, threads: threads, progress: mapBackProgress)
            applyThreshold(threshold, to: probability, count: voxels, into: mask, threads: threads)
        } else {
            // Nobody needs the probability on the whole input grid: threshold it slab by slab.
            try onInput.threshold(threshold, into: mask, threads: threads, progress: mapBackProgress)
        }
        if let crf {
            let start = networkEnd + 0.05
            try refineWithCRF(
                volume, probabilityOnInput: onInput, probability: probability, crf: crf, options: options,
                mask: mask, threads: threads
            ) { fraction, stage in
                progress?(start + (1 - start) * fraction, stage) ?? true
            }
        }
        if !options.postProcessing.isEmpty {
            // Slices across the input axis that runs head to foot.
            let headToFoot = preprocessing.orientation.rasAxis.firstIndex(of: 2) ?? 2
            let stage: SegmentationStage = crf == nil ? .postprocess : .crf
            let fraction = crf == nil ? networkEnd + 0.025 : 1
            try postProcess(
                mask: UnsafeMutableBufferPointer(start: mask, count: voxels), size: volume.size,
                sliceAxis: parts[0].grid.mapping.sourceAxis[headToFoot], steps: options.postProcessing
            ) {
                try report(fraction, stage)
            }
        }
        try report(1, crf == nil ? .postprocess : .crf)
    }

    /// Replaces `mask` (thresholded at 0.5) by the dense CRF's labels inside `crfRegion`
    /// and clears it outside. The CRF runs on the volume cropped to the region — the same
    /// labels as on the whole volume restricted to it, as the CRF's points are the region's
    /// voxels either way — with the probability there taken from the caller's `probability`
    /// or, without one, mapped back for the region alone: memory then grows with the liver,
    /// not with the scan.
    private func refineWithCRF(
        _ volume: VolumeInput, probabilityOnInput: InputGridProbability, probability: UnsafeMutablePointer<Float>?,
        crf: CRFParameters, options: SegmentationOptions, mask: UnsafeMutablePointer<UInt8>, threads: Int,
        progress: ProgressHandler?
    ) throws {
        let whole = VoxelBox(volume.size)
        let region = crfRegion(mask, volume: volume, crf: crf, options: options) ?? whole
        let cropped = region != whole
        let regionProbability = try FloatBuffer(count: probability != nil && !cropped ? 0 : region.voxelCount, zeroed: false)
        let regionMask = try Buffer<UInt8>(count: cropped ? region.voxelCount : 0, zeroed: false)
        let p: UnsafePointer<Float>
        switch (probability, cropped) {
        case (let probability?, false): p = UnsafePointer(probability)
        case (let probability?, true):
            region.crop(probability, size: volume.size, into: regionProbability.pointer)
            p = UnsafePointer(regionProbability.pointer)
        case (nil, _):
            try probabilityOnInput.write(box: region, into: regionProbability.pointer, threads: threads)
            p = UnsafePointer(regionProbability.pointer)
        }
        try volume.withCropped(to: region) { crop in
            try LiversegCRF.refineWithCRF(
                crop, probability: p, parameters: crf, mask: cropped ? regionMask.pointer : mask, progress: progress)
        }
        if cropped { region.paste(regionMask.pointer, into: mask, size: volume.size, outside: 0) }
    }

    /// Where the CRF needs to run when the largest component is kept afterwards (and the CRF
    /// refines only where it can matter, `restrictToUncertainRegion`): around the largest
    /// component of `mask` (thresholded at 0.5, the CRF's own threshold), grown by 2θα or
    /// the uncertain margin if larger (beyond 2θα the bilateral kernel's weight is below
    /// e⁻²; growing by 10 mm instead left twice as many voxels different from the CRF run
    /// everywhere on IRCADb-17, docs/crf.md). The liver is then looked for only there
    /// (`segment` clears the mask outside): liver the CRF would find elsewhere is removed by
    /// the largest-component step unless it joins the liver across the margin. Nil
    /// (everywhere) otherwise or without liver.
    func crfRegion(
        _ mask: UnsafePointer<UInt8>, volume: VolumeInput, crf: CRFParameters, options: SegmentationOptions
    ) -> VoxelBox? {
        guard crf.restrictToUncertainRegion, options.postProcessing.contains(.largestComponent) else { return nil }
        let voxels = volume.size.voxelCount
        guard let liver = largestComponentBox(UnsafeBufferPointer(start: mask, count: voxels), size: volume.size) else {
            return nil
        }
        let margin = max(crf.uncertainMarginMM, 2 * crf.thetaAlphaMM)
        let region = liver.grown(byMM: margin, spacing: volume.spacing, within: VoxelBox(volume.size))
        Log.write(.debug, "CRF region around the largest component: \(region.lower)..<\(region.upper)")
        return region
    }
}

extension ModelNetwork {
    /// The eq. 4 fused liver probability on the model grid (`size`), from the normalised
    /// model-grid input, running the network tile by tile.
    func fusedProbability(
        _ normalised: FloatBuffer, size: GridSize, options: SegmentationOptions, threads: Int,
        progress: (Double) throws -> Void
    ) throws -> FloatBuffer {
        let m = DSNArchitecture.sizeMultiple
        let grid = GridSize(x: (size.x + m - 1) / m * m, y: (size.y + m - 1) / m * m, z: (size.z + m - 1) / m * m)
        let plan = try TilePlan(grid: grid, halo: architecture.receptiveHalo, maxVoxels: max(1, options.maxTileVoxels))
        Log.write(.debug, "network grid \(grid), \(plan.tiles.count) tile(s), halo \(architecture.receptiveHalo)")
        let fused = try FloatBuffer(count: size.voxelCount, zeroed: false)
        // Padding beyond the model grid reads as the lowest HU of the window (air).
        let padValue = preprocessing.normalise(-Float.infinity)
        let (w1, w2) = (Float(fusionTau[0]), Float(fusionTau[1]))
        let wMain = 1 - w1 - w2
        for (t, tile) in plan.tiles.enumerated() {
            let region = tile.regionSize, o = tile.regionOrigin
            let input = try Tensor<Float>(channels: 1, size: region, zeroed: false)
            let dst = input.storage.pointer, src = normalised.pointer
            parallelFor(region.z, threads: threads) { k in
                for j in 0..<region.y {
                    let (gz, gy) = (o[2] + k, o[1] + j)
                    let row = dst + (k * region.y + j) * region.x
                    for i in 0..<region.x {
                        let gx = o[0] + i
                        row[i] = gx < size.x && gy < size.y && gz < size.z ? src[(gz * size.y + gy) * size.x + gx] : padValue
                    }
                }
            }
            let tileProbability = try network.fusedProbability(
                input, weights: (main: wMain, branch1: w1, branch2: w2), threads: threads
            ) { f in
                try progress((Double(t) + f) / Double(plan.tiles.count))
            }
            let c = tile.coreOrigin, core = tile.coreSize
            let (p, out) = (tileProbability.pointer, fused.pointer)
            parallelFor(core.z, threads: threads) { k in
                let gz = c[2] + k
                guard gz < size.z else { return }
                for j in 0..<core.y {
                    let gy = c[1] + j
                    guard gy < size.y else { continue }
                    for i in 0..<min(core.x, size.x - c[0]) {
                        let r = ((gz - o[2]) * region.y + (gy - o[1])) * region.x + (c[0] + i - o[0])
                        out[(gz * size.y + gy) * size.x + c[0] + i] = p[r]
                    }
                }
            }
        }
        return fused
    }
}
