import LiversegSupport
import LiversegVolume

/// The model grid a volume is resampled onto: the input reoriented to the model's axis
/// codes and resampled to the model's spacing, extents rounded to the nearest voxel.
public struct ModelGrid: Equatable, Sendable {
    /// Input axes → model axes.
    public let mapping: AxisMapping
    /// Input extents (i, j, k).
    public let inputSize: GridSize
    /// Extents of the model grid (x, y, z in model orientation).
    public let size: GridSize

    /// The largest model-grid extent along any axis, in voxels (at 0.5 mm, 2 m).
    public static let maximumExtent = 4096
    /// The most model-grid voxels (2^30: 4 GiB of float32 network input alone).
    public static let maximumVoxels = 1 << 30

    /// The model grid of `volume` for a model with `preprocessing`; a grid beyond
    /// `maximumExtent` along an axis or `maximumVoxels` in all is an error (a volume of
    /// absurd spacing, which would also overflow Int).
    public init(volume: VolumeInput, preprocessing: Preprocessing) throws {
        let mapping =
            try volume.ijkToRAS.map {
                AxisMapping(from: try AxisMapping.axisCodes(ofIJKToRAS: $0), to: preprocessing.orientation)
            } ?? .identity
        self.mapping = mapping
        inputSize = volume.size
        let inputExtents = [volume.size.x, volume.size.y, volume.size.z]
        let extents = try (0..<3).map { j -> Int in
            let source = mapping.sourceAxis[j]
            let millimetres = Double(inputExtents[source]) * volume.spacing[source]
            // In Double, checked before converting: the quotient may exceed Int's range.
            let voxels = max(1, (millimetres / preprocessing.spacing[j]).rounded())
            guard voxels <= Double(Self.maximumExtent) else {
                throw LiversegError.invalidArgument(
                    "the volume spans \(millimetres) mm along its axis \(source) (\(inputExtents[source]) voxels of \(volume.spacing[source]) mm): \(voxels) model voxels of \(preprocessing.spacing[j]) mm, more than the \(Self.maximumExtent) liverseg allows per axis"
                )
            }
            return Int(voxels)
        }
        size = GridSize(x: extents[0], y: extents[1], z: extents[2])
        guard size.voxelCount <= Self.maximumVoxels else {
            throw LiversegError.invalidArgument(
                "the model grid \(size) has \(size.voxelCount) voxels, more than the \(Self.maximumVoxels) liverseg allows")
        }
    }

    private var inputExtents: [Int] { [inputSize.x, inputSize.y, inputSize.z] }
    private var modelExtents: [Int] { [size.x, size.y, size.z] }

    /// Samples the input volume onto the model grid and normalises it: trilinear on raw HU,
    /// then clipping and scaling per `preprocessing`. Output: size.voxelCount floats.
    /// `progress` receives the fraction done, on the calling thread, and may throw to stop.
    public func preprocess(
        _ volume: VolumeInput, _ preprocessing: Preprocessing,
        into output: UnsafeMutablePointer<Float>, threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws {
        try resample(volume, into: output, threads: threads, progress: progress, transform: preprocessing.normalise)
    }

    /// Samples the input volume onto the model grid (trilinear), mapping each value by
    /// `transform`. Output: size.voxelCount floats. `progress` as for `preprocess`.
    public func resample(
        _ volume: VolumeInput, into output: UnsafeMutablePointer<Float>, threads: Int,
        progress: (Double) throws -> Void = { _ in }, transform: (Float) -> Float
    ) throws {
        let strides = [1, inputSize.x, inputSize.x * inputSize.y]
        let axes = (0..<3).map { j -> AxisSamples in
            let source = mapping.sourceAxis[j]
            return AxisSamples(
                outputCount: modelExtents[j], sourceCount: inputExtents[source],
                sourceStride: strides[source], flipOutput: false, flipSource: mapping.flipped[j])
        }
        try resampleTrilinear(
            volume.voxels, x: axes[0], y: axes[1], z: axes[2], into: output, threads: threads,
            progress: progress, transform: transform)
    }

    /// Samples a model-grid map (e.g. the fused probability) back onto the input grid in the
    /// input's orientation, at the input voxels of `box` only (default: all; a box inside
    /// the input grid). Output: box.voxelCount floats, x fastest, each the value it has in
    /// the whole map. `progress` as for `preprocess`.
    public func mapBack(
        _ modelValues: UnsafePointer<Float>, box: VoxelBox? = nil, into output: UnsafeMutablePointer<Float>, threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws {
        let box = box ?? VoxelBox(inputSize)
        let axes = mapBackSamples().enumerated().map { a, samples in samples.slice(box.lower[a]..<box.upper[a]) }
        try resampleTrilinear(
            .float32(modelValues), x: axes[0], y: axes[1], z: axes[2], into: output, threads: threads,
            progress: progress
        ) { $0 }
    }

    /// Per input axis, where each input voxel samples the model grid.
    private func mapBackSamples() -> [AxisSamples] {
        let strides = [1, size.x, size.x * size.y]
        return (0..<3).map { a -> AxisSamples in
            let j = mapping.sourceAxis.firstIndex(of: a)!
            return AxisSamples(
                outputCount: inputExtents[a], sourceCount: modelExtents[j],
                sourceStride: strides[j], flipOutput: mapping.flipped[j], flipSource: false)
        }
    }
}

/// The liver probability of a model's networks on the input grid: each network's fused
/// probability mapped back from its own model grid (`ModelGrid.mapBack`), then the mean over
/// the networks (summed in order, times 1/count; one network's is its own, bit for bit).
struct InputGridProbability {
    /// Each network's model grid and its fused probability there.
    let parts: [(grid: ModelGrid, fused: FloatBuffer)]
    /// The input grid's extents.
    let inputSize: GridSize

    /// Planes of about 4 MB of floats per slab, at least one.
    private func slabPlanes(plane: Int, planes: Int) -> Int { max(1, min(planes, (1 << 20) / max(1, plane))) }

    /// The probability at the input voxels of `box` (default: all): box.voxelCount floats,
    /// x fastest, each the value it has in the whole map. Beyond the first network, slabs of
    /// planes pass through a small buffer. `progress` as for `ModelGrid.preprocess`.
    func write(
        box: VoxelBox? = nil, into output: UnsafeMutablePointer<Float>, threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws {
        let box = box ?? VoxelBox(inputSize)
        let plane = (box.upper[0] - box.lower[0]) * (box.upper[1] - box.lower[1])
        let planes = box.upper[2] - box.lower[2]
        let slab = slabPlanes(plane: plane, planes: planes)
        let scratch = try FloatBuffer(count: parts.count > 1 ? slab * plane : 0, zeroed: false)
        for start in stride(from: 0, to: planes, by: slab) {
            let end = min(planes, start + slab)
            let slabBox = VoxelBox(
                lower: [box.lower[0], box.lower[1], box.lower[2] + start],
                upper: [box.upper[0], box.upper[1], box.lower[2] + end])
            try writeSlab(slabBox, into: output + start * plane, scratch: scratch, threads: threads)
            try progress(Double(end) / Double(planes))
        }
    }

    /// `write` thresholded on the way: `mask` (inputSize.voxelCount bytes) gets 1 where the
    /// probability is at least `threshold`, 0 elsewhere — the same mask as thresholding
    /// `write`'s output, without a float per input voxel (slabs of planes pass through a
    /// small buffer).
    func threshold(
        _ threshold: Float, into mask: UnsafeMutablePointer<UInt8>, threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws {
        let plane = inputSize.x * inputSize.y, planes = inputSize.z
        let slab = slabPlanes(plane: plane, planes: planes)
        let buffer = try FloatBuffer(count: slab * plane, zeroed: false)
        let scratch = try FloatBuffer(count: parts.count > 1 ? slab * plane : 0, zeroed: false)
        for start in stride(from: 0, to: planes, by: slab) {
            let end = min(planes, start + slab)
            let box = VoxelBox(lower: [0, 0, start], upper: [inputSize.x, inputSize.y, end])
            try writeSlab(box, into: buffer.pointer, scratch: scratch, threads: threads)
            applyThreshold(
                threshold, to: buffer.pointer, count: (end - start) * plane, into: mask + start * plane, threads: threads)
            try progress(Double(end) / Double(planes))
        }
    }

    /// The probability at the voxels of `box` into `target`; `scratch` holds box.voxelCount
    /// floats when there is more than one network.
    private func writeSlab(
        _ box: VoxelBox, into target: UnsafeMutablePointer<Float>, scratch: FloatBuffer, threads: Int
    ) throws {
        try parts[0].grid.mapBack(parts[0].fused.pointer, box: box, into: target, threads: threads)
        guard parts.count > 1 else { return }
        let count = box.voxelCount, scale = 1 / Float(parts.count)
        for part in parts.dropFirst() {
            try part.grid.mapBack(part.fused.pointer, box: box, into: scratch.pointer, threads: threads)
            nonisolated(unsafe) let (sum, next) = (target, UnsafePointer(scratch.pointer))
            parallelChunks(count, threads: threads) { _, chunk in
                for i in chunk { sum[i] += next[i] }
            }
        }
        nonisolated(unsafe) let mean = target
        parallelChunks(count, threads: threads) { _, chunk in
            for i in chunk { mean[i] *= scale }
        }
    }
}

/// mask[i] = values[i] ≥ threshold ? 1 : 0 for i in 0..<count.
func applyThreshold(
    _ threshold: Float, to values: UnsafePointer<Float>, count: Int, into mask: UnsafeMutablePointer<UInt8>, threads: Int
) {
    nonisolated(unsafe) let (source, target) = (values, mask)
    parallelChunks(count, threads: threads) { _, chunk in
        for i in chunk { target[i] = source[i] >= threshold ? 1 : 0 }
    }
}
