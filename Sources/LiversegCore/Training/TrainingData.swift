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

    /// Wraps model-grid arrays.
    public init(name: String, size: GridSize, intensities: [Float], labels: [UInt8]) {
        self.name = name
        self.size = size
        self.intensities = intensities
        self.labels = labels
        self.liverIndices = labels.indices.filter { labels[$0] != 0 }
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
            intensities.withUnsafeMutableBufferPointer { grid.preprocess(volume, preprocessing, into: $0.baseAddress!, threads: threads) }
            let binary = try mask.withVoxels(mask.mask().map { Float($0) })
            try binary.withVolumeInput { maskVolume in
                var fraction = [Float](repeating: 0, count: grid.size.voxelCount)
                fraction.withUnsafeMutableBufferPointer {
                    grid.resample(maskVolume, into: $0.baseAddress!, threads: threads) { $0 }
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

/// Draws training patches: a random volume, a patch containing a liver voxel with
/// probability `liverFraction` (else any voxel), padding with air outside the volume, then a random
/// in-plane rotation by a multiple of 90°, a random flip of x and, when asked for, a random
/// intensity change. Patch i of a seed is always the same, whatever was drawn before.
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
    /// Grey-value augmentation and the intensity mapping it is expressed in, or nil for none.
    public let intensityAugmentation: (IntensityAugmentation, Preprocessing)?

    /// A sampler; `patch` extents must be multiples of 4.
    public init(volumes: [TrainingVolume], patch: GridSize, liverFraction: Double = 0.5, padValue: Float, seed: UInt64,
                intensityAugmentation: (IntensityAugmentation, Preprocessing)? = nil) throws {
        guard !volumes.isEmpty else { throw LiversegError.invalidArgument("no training volumes") }
        guard [patch.x, patch.y, patch.z].allSatisfy({ $0 >= 4 && $0 % 4 == 0 }) else {
            throw LiversegError.invalidArgument("patch \(patch) extents must be positive multiples of 4")
        }
        self.volumes = volumes
        self.patch = patch
        self.liverFraction = liverFraction
        self.padValue = padValue
        self.seed = seed
        self.intensityAugmentation = intensityAugmentation
    }

    /// Patch number `index`: the network input [1, Z, Y, X] and its labels.
    public func patch(_ index: Int) throws -> (input: Tensor<Float>, labels: [UInt8]) {
        var rng = SeededGenerator(seed: seed, stream: 1, index: UInt64(index))
        let volume = volumes[Int(rng.next() % UInt64(volumes.count))]
        let s = volume.size
        // The chosen voxel lands at a uniformly random place in the patch, not its centre:
        // a centred organ would teach the network where patch borders (zero padding) are.
        let anchor: [Int]
        if !volume.liverIndices.isEmpty, rng.uniform() < liverFraction {
            let i = volume.liverIndices[Int(rng.next() % UInt64(volume.liverIndices.count))]
            anchor = [i % s.x, (i / s.x) % s.y, i / (s.x * s.y)]
        } else {
            anchor = [Int(rng.next() % UInt64(s.x)), Int(rng.next() % UInt64(s.y)), Int(rng.next() % UInt64(s.z))]
        }
        let placement = [Int(rng.next() % UInt64(patch.x)), Int(rng.next() % UInt64(patch.y)), Int(rng.next() % UInt64(patch.z))]
        // Square patches rotate by any multiple of 90°, others by 0° or 180°.
        let quarterTurns = Int(rng.next() % 4) & (patch.x == patch.y ? 3 : 2)
        let flipX = rng.next() & 1 == 1
        let input = try Tensor<Float>(channels: 1, size: patch, zeroed: false)
        var labels = [UInt8](repeating: 0, count: patch.voxelCount)
        let origin = (0..<3).map { anchor[$0] - placement[$0] }
        let out = input.storage.pointer
        for z in 0..<patch.z {
            for y in 0..<patch.y {
                for x in 0..<patch.x {
                    // The output voxel (x, y) reads the source at the inverse rotation.
                    let fx = flipX ? patch.x - 1 - x : x
                    let (sx, sy): (Int, Int)
                    switch quarterTurns {
                    case 1: (sx, sy) = (y, patch.x - 1 - fx)
                    case 2: (sx, sy) = (patch.x - 1 - fx, patch.y - 1 - y)
                    case 3: (sx, sy) = (patch.y - 1 - y, fx)
                    default: (sx, sy) = (fx, y)
                    }
                    let (vx, vy, vz) = (origin[0] + sx, origin[1] + sy, origin[2] + z)
                    let o = (z * patch.y + y) * patch.x + x
                    if vx >= 0, vx < s.x, vy >= 0, vy < s.y, vz >= 0, vz < s.z {
                        let i = (vz * s.y + vy) * s.x + vx
                        out[o] = volume.intensities[i]
                        labels[o] = volume.labels[i]
                    } else {
                        out[o] = padValue
                    }
                }
            }
        }
        if let (augmentation, p) = intensityAugmentation {
            // Drawn last, so patches without augmentation are the same as before it existed.
            let scale = augmentation.scale.lowerBound + rng.uniform() * (augmentation.scale.upperBound - augmentation.scale.lowerBound)
            let shift = augmentation.shiftHU.lowerBound + rng.uniform() * (augmentation.shiftHU.upperBound - augmentation.shiftHU.lowerBound)
            // On normalised values x = (HU − mean)/std the change is x′ = scale·x + (scale·mean + shift − mean)/std.
            let a = Float(scale), b = Float((scale * p.mean + shift - p.mean) / p.std)
            let lower = p.normalise(-.infinity), upper = p.normalise(.infinity)
            for o in 0..<patch.voxelCount { out[o] = min(max(a * out[o] + b, lower), upper) }
        }
        return (input, labels)
    }
}
