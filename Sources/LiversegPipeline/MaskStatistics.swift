import LiversegSupport
import LiversegVolume

/// What a mask on a CT's grid holds: its size, the CT's HU inside it, where it lies and in
/// how many pieces (the `--statistics` document of `liverseg segment`, and
/// `liverseg_measure_mask` in the C API).
public struct MaskStatistics: Equatable, Sendable {
    /// The index box of the mask's voxels and where it lies in mm.
    public struct BoundingBox: Equatable, Sendable {
        /// The smallest voxel indices (i, j, k) of a mask voxel.
        public var minVoxel: [Int]
        /// The largest voxel indices (i, j, k) of a mask voxel.
        public var maxVoxel: [Int]
        /// The box's extent in mm along i, j and k: (max − min + 1) · spacing.
        public var extentMM: [Double]
        /// The RAS box (x, y, z) of the voxel centres at the index box's eight corners.
        public var rasMinMM: [Double]
        /// See `rasMinMM`.
        public var rasMaxMM: [Double]
    }

    /// HU statistics of the CT inside the mask.
    public struct Intensities: Equatable, Sendable {
        /// The mean HU.
        public var mean: Double
        /// The standard deviation of HU (population: divided by the voxel count).
        public var standardDeviation: Double
        /// The median HU (the mean of the middle two for an even count).
        public var median: Double
    }

    /// Non-zero mask voxels.
    public var voxels: Int
    /// Their volume in ml.
    public var volumeML: Double
    /// 6-connected components of the mask.
    public var components: Int
    /// nil for an empty mask.
    public var intensities: Intensities?
    /// nil for an empty mask.
    public var boundingBox: BoundingBox?

    /// Measures `mask` (volume.size voxels, x fastest, non-zero = inside) on `volume`'s grid;
    /// HU are the volume's values as segmentation reads them. Throws on a size mismatch or
    /// an invalid volume.
    public init(volume: VolumeInput, mask: [UInt8]) throws {
        try volume.validate()
        let size = volume.size, spacing = volume.spacing
        guard mask.count == size.voxelCount else {
            throw LiversegError.invalidArgument("mask has \(mask.count) voxels but the volume \(size) has \(size.voxelCount)")
        }
        var values: [Float] = []
        var (lowI, lowJ, lowK) = (size.x, size.y, size.z), (highI, highJ, highK) = (-1, -1, -1)
        func gather<T: HounsfieldVoxel>(_ hu: UnsafePointer<T>) {
            var index = 0
            for k in 0..<size.z {
                for j in 0..<size.y {
                    for i in 0..<size.x {
                        defer { index += 1 }
                        guard mask[index] != 0 else { continue }
                        values.append(hu[index].hounsfield)
                        (lowI, lowJ, lowK) = (min(lowI, i), min(lowJ, j), min(lowK, k))
                        (highI, highJ, highK) = (max(highI, i), max(highJ, j), max(highK, k))
                    }
                }
            }
        }
        switch volume.voxels {
        case .int16(let p): gather(p)
        case .int32(let p): gather(p)
        case .float32(let p): gather(p)
        }
        voxels = values.count
        volumeML = Double(values.count) * spacing.reduce(1, *) / 1000
        components = mask.withUnsafeBufferPointer { componentCount(mask: $0, size: size) }
        guard !values.isEmpty else {
            intensities = nil
            boundingBox = nil
            return
        }
        let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
        let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count)
        values.sort()
        let middle = values.count / 2
        let median = values.count % 2 == 1 ? Double(values[middle]) : (Double(values[middle - 1]) + Double(values[middle])) / 2
        intensities = Intensities(mean: mean, standardDeviation: variance.squareRoot(), median: median)
        let lower = [lowI, lowJ, lowK], upper = [highI, highJ, highK]
        // Without a matrix the axes are RAS with the origin at voxel (0, 0, 0).
        let m = volume.ijkToRAS ?? [spacing[0], 0, 0, 0, 0, spacing[1], 0, 0, 0, 0, spacing[2], 0, 0, 0, 0, 1]
        var rasLower = [Double](repeating: .infinity, count: 3), rasUpper = [Double](repeating: -.infinity, count: 3)
        for corner in 0..<8 {
            let ijk = (0..<3).map { Double((corner >> $0) & 1 == 0 ? lower[$0] : upper[$0]) }
            for r in 0..<3 {
                let x = m[r * 4] * ijk[0] + m[r * 4 + 1] * ijk[1] + m[r * 4 + 2] * ijk[2] + m[r * 4 + 3]
                rasLower[r] = min(rasLower[r], x)
                rasUpper[r] = max(rasUpper[r], x)
            }
        }
        boundingBox = BoundingBox(
            minVoxel: lower, maxVoxel: upper, extentMM: (0..<3).map { Double(upper[$0] - lower[$0] + 1) * spacing[$0] },
            rasMinMM: rasLower, rasMaxMM: rasUpper)
    }
}
