#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegImageIO
import LiversegVolume
import LiversegNetwork
import LiversegPipeline

/// A labelled volume on a model's grid: normalised intensities and 0/1 liver labels,
/// [Z, Y, X] with x fastest.
public struct TrainingVolume: Sendable {
    /// A name for logs (e.g. the CT file's).
    public let name: String
    /// Model-grid extents.
    public let size: GridSize
    /// Normalised intensities.
    public let intensities: [Float]
    /// 1 where the reference says liver.
    public let labels: [UInt8]
    /// Flat indices of the liver voxels (patch centres are drawn from them).
    public let liverIndices: [Int]
    /// Smallest and largest liver coordinate per axis (x, y, z), or nil without liver:
    /// field-of-view crops cut the volume inside this box.
    public let liverExtent: [ClosedRange<Int>]?

    /// Wraps model-grid arrays.
    public init(name: String, size: GridSize, intensities: [Float], labels: [UInt8]) {
        self.name = name
        self.size = size
        self.intensities = intensities
        self.labels = labels
        self.liverIndices = labels.indices.filter { labels[$0] != 0 }
        var lower = [Int.max, Int.max, Int.max], upper = [Int.min, Int.min, Int.min]
        for i in liverIndices {
            let c = size.coordinates(ofIndex: i)
            for a in 0..<3 { lower[a] = min(lower[a], c[a]); upper[a] = max(upper[a], c[a]) }
        }
        self.liverExtent = liverIndices.isEmpty ? nil : (0..<3).map { lower[$0]...upper[$0] }
    }

    /// Reads a CT and its mask and maps both onto the model grid with the inference
    /// pipeline's own reorientation and resampling (the mask: trilinear, then ≥ ½).
    public init(ctPath: String, maskPath: String, preprocessing: Preprocessing, threads: Int) throws {
        let ct = try readImage(ctPath), mask = try readImage(maskPath)
        guard ct.size == mask.size, ct.hasSameGeometry(as: mask) else {
            throw LiversegError.invalidArgument("\(maskPath) does not share the grid of \(ctPath)")
        }
        var intensities: [Float] = [], labels: [UInt8] = []
        let size: GridSize = try ct.withVolumeInput { volume in
            let grid = try ModelGrid(volume: volume, preprocessing: preprocessing)
            intensities = [Float](repeating: 0, count: grid.size.voxelCount)
            try intensities.withUnsafeMutableBufferPointer {
                try grid.preprocess(volume, preprocessing, into: $0.baseAddress!, threads: threads)
            }
            let binary = try mask.withVoxels(mask.mask().map { Float($0) })
            try binary.withVolumeInput { maskVolume in
                var fraction = [Float](repeating: 0, count: grid.size.voxelCount)
                try fraction.withUnsafeMutableBufferPointer {
                    try grid.resample(maskVolume, into: $0.baseAddress!, threads: threads) { $0 }
                }
                labels = fraction.map { $0 >= 0.5 ? 1 : 0 }
            }
            return grid.size
        }
        self.init(name: ctPath, size: size, intensities: intensities, labels: labels)
    }
}

/// A random affine change of the grey values of each patch, HU′ = scale · HU + shift, clipped
/// back to the model's HU window. The IRCADb training CT is contrast-enhanced (liver median
/// 100–120 HU) while unenhanced CT puts the liver near 45 HU; without this a network learns
/// "liver = 110 HU" and finds nothing (or bone) in unenhanced scans.
public struct IntensityAugmentation: Equatable, Sendable {
    /// Range of the additive change in HU.
    public var shiftHU: ClosedRange<Double>
    /// Range of the multiplicative change.
    public var scale: ClosedRange<Double>

    /// An augmentation drawing shift and scale uniformly from these ranges.
    public init(shiftHU: ClosedRange<Double>, scale: ClosedRange<Double>) {
        self.shiftHU = shiftHU
        self.scale = scale
    }
}

/// Where and how a training patch is cut from its volume, and what is painted into it
/// (`LesionSynthesis`, which follows the patch's labels). Inference always reorients CT to
/// the model's axes (RAS), so left and right, head and feet are information the network
/// must keep: the default changes geometry only as scanners and patients do (small tilts,
/// body size, a field of view that ends inside the liver) and never mirrors. Mirroring and
/// 90° turns make the liver (patient's right) and spleen (left) look alike and stay
/// available only to reproduce older models.
public struct SpatialAugmentation: Equatable, Sendable {
    /// Largest rotation about the x, y and z axes in degrees; each angle is drawn uniformly in ±.
    public var maxRotationDegrees: [Double]
    /// Range of the isotropic scale factor (> 1 enlarges the anatomy in the patch).
    public var scale: ClosedRange<Double>
    /// Range of an extra scale factor drawn per axis (anisotropic scaling).
    public var axisScale: ClosedRange<Double>
    /// Probability, per axis (x, y, z), that the volume is cut by a plane through the liver's
    /// extent: the part beyond the plane becomes padding, as where a scan ends inside the liver.
    public var fieldOfViewCropProbability: [Double]
    /// Random in-plane turns by multiples of 90° (180° only for non-square patches).
    public var quarterTurns: Bool
    /// Random mirroring of x (left–right).
    public var mirrorX: Bool
    /// A random smooth warp of every patch, or nil for none.
    public var elastic: ElasticDeformation?
    /// Synthetic lesions in the liver of some patches, or nil for none.
    public var lesions: LesionSynthesis?

    /// Creates an augmentation; angles in degrees, probabilities in [0, 1].
    public init(
        maxRotationDegrees: [Double], scale: ClosedRange<Double>, axisScale: ClosedRange<Double>,
        fieldOfViewCropProbability: [Double], quarterTurns: Bool, mirrorX: Bool, elastic: ElasticDeformation? = nil,
        lesions: LesionSynthesis? = nil
    ) {
        self.maxRotationDegrees = maxRotationDegrees
        self.scale = scale
        self.axisScale = axisScale
        self.fieldOfViewCropProbability = fieldOfViewCropProbability
        self.quarterTurns = quarterTurns
        self.mirrorX = mirrorX
        self.elastic = elastic
        self.lesions = lesions
    }

    /// The default: rotations up to ±5° about x and y and ±15° in-plane, scale ±15 %
    /// (isotropic) and ±5 % per axis, field-of-view crops (x, y 10 %, z 30 % of patches).
    public static let anatomical = SpatialAugmentation(
        maxRotationDegrees: [5, 5, 15], scale: 0.85...1.15, axisScale: 0.95...1.05,
        fieldOfViewCropProbability: [0.1, 0.1, 0.3], quarterTurns: false, mirrorX: false)
    /// `anatomical` with an elastic warp of every patch: control points 16 voxels apart
    /// (48 mm on the 3 mm grid) moving up to 6 voxels along each axis.
    public static let elastic: SpatialAugmentation = {
        var a = SpatialAugmentation.anatomical
        a.elastic = ElasticDeformation(controlSpacing: 16, maxDisplacement: 6)
        return a
    }()
    /// `anatomical` with synthetic lesions in half the patches that hold liver: 1–3 ellipsoids,
    /// semi-axes 5–35 mm, 80 HU darker to 40 HU brighter than the patch's liver (hypodense
    /// metastases and cysts, tumours that wash out, and arterially enhancing ones).
    public static let lesions: SpatialAugmentation = {
        var a = SpatialAugmentation.anatomical
        a.lesions = LesionSynthesis(probability: 0.5, maxCount: 3, radiusMillimetres: 5...35, contrastHU: -80...40)
        return a
    }()
    /// What models before 0.2 trained with: 90° turns and x mirroring, nothing else.
    public static let symmetric = SpatialAugmentation(
        maxRotationDegrees: [0, 0, 0], scale: 1...1, axisScale: 1...1,
        fieldOfViewCropProbability: [0, 0, 0], quarterTurns: true, mirrorX: true)
    /// Patches copied from the volume as they are.
    public static let none = SpatialAugmentation(
        maxRotationDegrees: [0, 0, 0], scale: 1...1, axisScale: 1...1,
        fieldOfViewCropProbability: [0, 0, 0], quarterTurns: false, mirrorX: false)

    /// Every field as JSON: checkpoints record it, so a run resumes with the augmentation it
    /// started with.
    public var json: JSONValue {
        func range(_ r: ClosedRange<Double>) -> JSONValue { .array([.number(r.lowerBound), .number(r.upperBound)]) }
        return .object(
            [
                ("max_rotation_degrees", .array(maxRotationDegrees.map { .number($0) })), ("scale", range(scale)),
                ("axis_scale", range(axisScale)),
                ("field_of_view_crop_probability", .array(fieldOfViewCropProbability.map { .number($0) })),
                ("quarter_turns", .bool(quarterTurns)), ("mirror_x", .bool(mirrorX)),
            ]
                + (elastic.map { e in
                    [
                        (
                            "elastic",
                            .object([
                                ("control_spacing", .number(Double(e.controlSpacing))),
                                ("max_displacement", .number(e.maxDisplacement)),
                            ])
                        )
                    ]
                } ?? [])
                + (lesions.map { l in
                    [
                        (
                            "lesions",
                            .object([
                                ("probability", .number(l.probability)), ("max_count", .number(Double(l.maxCount))),
                                ("radius_mm", range(l.radiusMillimetres)), ("contrast_hu", range(l.contrastHU)),
                            ])
                        )
                    ]
                } ?? []))
    }

    /// The presets by name, for command lines and provenance.
    public static let presets: [(name: String, augmentation: SpatialAugmentation)] =
        [("anatomical", .anatomical), ("elastic", .elastic), ("lesions", .lesions), ("symmetric", .symmetric), ("none", .none)]
}

/// Draws training patches: a volume (chosen with probability proportional to its voxel
/// count, so a 20-slice CT is not drawn as often as a whole abdomen), a voxel that lands at a
/// random place in the patch (a liver voxel with probability `liverFraction`, else any
/// voxel), a random geometric change about that voxel (`SpatialAugmentation`) sampled
/// trilinearly with air padding outside the volume, then, when asked for, a random intensity
/// change. Synthetic lesions are painted before the intensity change, so it applies to them
/// too. Patch i of a seed is always the same, whatever was drawn before.
public struct PatchSampler: Sendable {
    /// The labelled volumes.
    public let volumes: [TrainingVolume]
    /// Patch extents (multiples of 4).
    public let patch: GridSize
    /// Probability of centring a patch on a liver voxel.
    public let liverFraction: Double
    /// Normalised intensity used outside the volume.
    public let padValue: Float
    /// The seed.
    public let seed: UInt64
    /// Geometric augmentation.
    public let spatialAugmentation: SpatialAugmentation
    /// Grey-value augmentation, or nil for none.
    public let intensityAugmentation: IntensityAugmentation?
    /// The model grid's spacing and intensity mapping, in which the augmentations' mm and HU
    /// are expressed.
    public let preprocessing: Preprocessing
    /// Running sums of the volumes' voxel counts, for the size-weighted draw.
    private let cumulativeVoxels: [Int]

    /// A sampler; `patch` extents must be multiples of 4, `preprocessing` is the model's (the
    /// grey-value and lesion augmentations convert their HU and mm with it).
    public init(
        volumes: [TrainingVolume], patch: GridSize, liverFraction: Double = 0.5, padValue: Float, seed: UInt64,
        spatialAugmentation: SpatialAugmentation = .anatomical, intensityAugmentation: IntensityAugmentation? = nil,
        preprocessing: Preprocessing
    ) throws {
        guard !volumes.isEmpty else { throw LiversegError.invalidArgument("no training volumes") }
        guard [patch.x, patch.y, patch.z].allSatisfy({ $0 >= 4 && $0 % 4 == 0 }) else {
            throw LiversegError.invalidArgument("patch \(patch) extents must be positive multiples of 4")
        }
        let a = spatialAugmentation
        guard a.maxRotationDegrees.count == 3, a.fieldOfViewCropProbability.count == 3,
            a.maxRotationDegrees.allSatisfy({ $0 >= 0 && $0 <= 180 }),
            a.fieldOfViewCropProbability.allSatisfy({ $0 >= 0 && $0 <= 1 }),
            a.scale.lowerBound > 0, a.axisScale.lowerBound > 0, a.scale.upperBound.isFinite, a.axisScale.upperBound.isFinite
        else {
            throw LiversegError.invalidArgument(
                "spatial augmentation needs 3 angles in [0, 180]°, 3 probabilities in [0, 1] and positive finite scales")
        }
        if let elastic = a.elastic, !elastic.isFoldFree {
            throw LiversegError.invalidArgument(
                "elastic deformation: control spacing \(elastic.controlSpacing) must be ≥ 1 voxel and the largest move "
                    + "\(elastic.maxDisplacement) in [0, \(ElasticDeformation.foldFreeFraction) · spacing) voxels, or the warp may fold"
            )
        }
        if let lesions = a.lesions, !lesions.isValid {
            throw LiversegError.invalidArgument(
                "lesion synthesis needs a probability in [0, 1], at least 1 lesion, positive finite radii and finite contrasts, not \(lesions)"
            )
        }
        self.volumes = volumes
        self.patch = patch
        self.liverFraction = liverFraction
        self.padValue = padValue
        self.seed = seed
        self.spatialAugmentation = spatialAugmentation
        self.intensityAugmentation = intensityAugmentation
        self.preprocessing = preprocessing
        var sum = 0
        cumulativeVoxels = volumes.map {
            sum += $0.size.voxelCount; return sum
        }
    }

    /// Patch number `index`: the network input [1, Z, Y, X] and its labels.
    public func patch(_ index: Int) throws -> (input: Tensor<Float>, labels: [UInt8]) {
        var rng = SeededGenerator(seed: seed, stream: 1, index: UInt64(index))
        let pick = Int(rng.next() % UInt64(cumulativeVoxels.last!))
        let volume = volumes[cumulativeVoxels.firstIndex { pick < $0 }!]
        let s = volume.size, extents = [s.x, s.y, s.z], patchExtents = [patch.x, patch.y, patch.z]
        // The chosen voxel lands at a uniformly random place in the patch, not its centre:
        // a centred organ would teach the network where patch borders (zero padding) are.
        let anchor: [Int]
        if !volume.liverIndices.isEmpty, rng.uniform() < liverFraction {
            let i = volume.liverIndices[Int(rng.next() % UInt64(volume.liverIndices.count))]
            anchor = s.coordinates(ofIndex: i)
        } else {
            anchor = extents.map { Int(rng.next() % UInt64($0)) }
        }
        let placement = patchExtents.map { Int(rng.next() % UInt64($0)) }
        let (transform, bounds) = drawGeometry(&rng, volume: volume, anchor: anchor)
        // The warp has its own stream: patches without it stay what they always were.
        var warpRNG = SeededGenerator(seed: seed, stream: 2, index: UInt64(index))
        let warp = spatialAugmentation.elastic?.displacements(&warpRNG, patch: patch)

        let input = try Tensor<Float>(channels: 1, size: patch, zeroed: false)
        var labels = [UInt8](repeating: 0, count: patch.voxelCount)
        let out = input.storage.pointer
        // Voxel p of the patch reads the volume at anchor + transform · (p − placement + warp(p)).
        let m = transform, a = SIMD3<Double>(anchor.map(Double.init))
        let lowest = SIMD3<Double>(bounds.map { Double($0.lowerBound) }),
            highest = SIMD3<Double>(bounds.map { Double($0.upperBound) })
        volume.intensities.withUnsafeBufferPointer { intensities in
            volume.labels.withUnsafeBufferPointer { sourceLabels in
                for z in 0..<patch.z {
                    for y in 0..<patch.y {
                        for x in 0..<patch.x {
                            let o = (z * patch.y + y) * patch.x + x
                            let d =
                                SIMD3<Double>(Double(x - placement[0]), Double(y - placement[1]), Double(z - placement[2]))
                                + (warp?[o] ?? .zero)
                            let position = a + m.0 * d.x + m.1 * d.y + m.2 * d.z
                            // Inside when the nearest voxel is in view.
                            guard all(position .>= lowest - 0.5) && all(position .< highest + 0.5) else {
                                out[o] = padValue
                                continue
                            }
                            let (value, label) = trilinear(
                                position.clamped(lowerBound: lowest, upperBound: highest),
                                highest: highest, extents: extents,
                                intensities: intensities, labels: sourceLabels)
                            out[o] = value
                            labels[o] = label >= 0.5 ? 1 : 0
                        }
                    }
                }
            }
        }
        if let lesions = spatialAugmentation.lesions {
            // Their own stream, as the warp's.
            var lesionRNG = SeededGenerator(seed: seed, stream: 3, index: UInt64(index))
            lesions.paint(&lesionRNG, patch: out, labels: labels, size: patch, preprocessing: preprocessing)
        }
        if let augmentation = intensityAugmentation {
            let p = preprocessing
            // Drawn after the geometry, so the voxels of a patch do not depend on it.
            let scale =
                augmentation.scale.lowerBound + rng.uniform() * (augmentation.scale.upperBound - augmentation.scale.lowerBound)
            let shift =
                augmentation.shiftHU.lowerBound + rng.uniform()
                * (augmentation.shiftHU.upperBound - augmentation.shiftHU.lowerBound)
            // On normalised values x = (HU − mean)/std the change is x′ = scale·x + (scale·mean + shift − mean)/std.
            let a = Float(scale), b = Float((scale * p.mean + shift - p.mean) / p.std)
            let lower = p.normalise(-.infinity), upper = p.normalise(.infinity)
            for o in 0..<patch.voxelCount { out[o] = min(max(a * out[o] + b, lower), upper) }
        }
        return (input, labels)
    }

    /// Draws the patch's geometry: the columns of the 3×3 matrix from patch offsets to volume
    /// offsets, and the part of the volume that stays inside the field of view per axis.
    private func drawGeometry(
        _ rng: inout SeededGenerator, volume: TrainingVolume, anchor: [Int]
    )
        -> (transform: (SIMD3<Double>, SIMD3<Double>, SIMD3<Double>), bounds: [ClosedRange<Int>])
    {
        let g = spatialAugmentation
        func uniform(_ r: ClosedRange<Double>) -> Double { r.lowerBound + rng.uniform() * (r.upperBound - r.lowerBound) }
        // Integer matrices for the legacy turns and mirror keep those patches exact copies.
        var transform: [Double] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
        if g.quarterTurns {
            // Square patches turn by any multiple of 90°, others by 0° or 180°.
            let turns = Int(rng.next() % 4) & (patch.x == patch.y ? 3 : 2)
            let (c, s): (Double, Double) = [(1, 0), (0, 1), (-1, 0), (0, -1)][turns]
            transform = multiply3x3(transform, [c, -s, 0, s, c, 0, 0, 0, 1])
        }
        if g.mirrorX, rng.next() & 1 == 1 { transform = multiply3x3(transform, [-1, 0, 0, 0, 1, 0, 0, 0, 1]) }
        let angles = g.maxRotationDegrees.map { uniform(-$0...$0) * Double.pi / 180 }
        if angles.contains(where: { $0 != 0 }) {
            let (cx, sx, cy, sy, cz, sz) = (
                cos(angles[0]), sin(angles[0]), cos(angles[1]), sin(angles[1]),
                cos(angles[2]), sin(angles[2])
            )
            let rx: [Double] = [1, 0, 0, 0, cx, -sx, 0, sx, cx]
            let ry: [Double] = [cy, 0, sy, 0, 1, 0, -sy, 0, cy]
            let rz: [Double] = [cz, -sz, 0, sz, cz, 0, 0, 0, 1]
            transform = multiply3x3(transform, multiply3x3(rz, multiply3x3(ry, rx)))
        }
        // Scaling the anatomy up by f samples the volume f times more densely.
        let isotropic = uniform(g.scale)
        let perAxis = (0..<3).map { _ in 1 / (isotropic * uniform(g.axisScale)) }
        if perAxis.contains(where: { $0 != 1 }) {
            transform = multiply3x3(transform, [perAxis[0], 0, 0, 0, perAxis[1], 0, 0, 0, perAxis[2]])
        }
        let s = [volume.size.x, volume.size.y, volume.size.z]
        var bounds = s.map { 0...($0 - 1) }
        for axis in 0..<3 where g.fieldOfViewCropProbability[axis] > 0 {
            guard rng.uniform() < g.fieldOfViewCropProbability[axis], let extent = volume.liverExtent?[axis] else { continue }
            // A plane through the liver; the side holding the anchor stays in view.
            let plane = extent.lowerBound + Int(rng.next() % UInt64(extent.count))
            bounds[axis] = anchor[axis] <= plane ? 0...plane : plane...(s[axis] - 1)
        }
        let t = transform
        return ((SIMD3(t[0], t[3], t[6]), SIMD3(t[1], t[4], t[7]), SIMD3(t[2], t[5], t[8])), bounds)
    }

    /// Trilinear intensity and label fraction at `position` (inside the volume, at most
    /// `highest` per axis; neighbours beyond it are clamped to it).
    private func trilinear(
        _ position: SIMD3<Double>, highest: SIMD3<Double>, extents: [Int],
        intensities: UnsafeBufferPointer<Float>, labels: UnsafeBufferPointer<UInt8>
    ) -> (Float, Float) {
        let base = position.rounded(.down)
        let weight = position - base
        let next = (base + 1).replacing(with: highest, where: base + 1 .> highest)
        // Offsets of the low and high corners along each axis, converted once per voxel (the
        // generic SIMD3<Int>(SIMD3<Double>) conversion is not inlined and showed in profiles).
        let low = (Int(base.x), Int(base.y) * extents[0], Int(base.z) * extents[0] * extents[1])
        let high = (Int(next.x), Int(next.y) * extents[0], Int(next.z) * extents[0] * extents[1])
        var value = 0.0, label = 0.0
        for corner in 0..<8 {
            let isHigh = SIMD3<Double>(Double(corner & 1), Double(corner >> 1 & 1), Double(corner >> 2 & 1)) .== 1
            let w = (1 - weight).replacing(with: weight, where: isHigh)
            let product = w.x * w.y * w.z
            guard product != 0 else { continue }
            let index =
                (corner & 1 == 0 ? low.0 : high.0) + (corner & 2 == 0 ? low.1 : high.1) + (corner & 4 == 0 ? low.2 : high.2)
            value += product * Double(intensities[index])
            label += product * Double(labels[index])
        }
        return (Float(value), Float(label))
    }
}

/// The product a·b of row-major 3×3 matrices.
private func multiply3x3(_ a: [Double], _ b: [Double]) -> [Double] {
    (0..<9).map { i -> Double in
        let row = i / 3, column = i % 3
        return a[3 * row] * b[column] + a[3 * row + 1] * b[3 + column] + a[3 * row + 2] * b[6 + column]
    }
}
