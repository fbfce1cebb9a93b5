/// Extent of a 3-D grid in voxels, (x, y, z).
public struct GridSize: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var z: Int

    /// Creates a size from its three extents.
    public init(x: Int, y: Int, z: Int) { self.x = x; self.y = y; self.z = z }

    /// Number of voxels (callers check overflow at the boundary).
    public var voxelCount: Int { x * y * z }

    /// Every extent divided by `factor` (exactly; callers ensure divisibility).
    public func divided(by factor: Int) -> GridSize { GridSize(x: x / factor, y: y / factor, z: z / factor) }

    /// Every extent multiplied by `factor`.
    public func multiplied(by factor: Int) -> GridSize { GridSize(x: x * factor, y: y * factor, z: z * factor) }

    public var description: String { "\(x)×\(y)×\(z)" }
}

/// A box of voxels [lower, upper) on a grid, one bound per axis (x, y, z).
public struct VoxelBox: Equatable, Sendable {
    /// First voxel inside the box along each axis.
    public var lower: [Int]
    /// One past the last voxel inside the box along each axis.
    public var upper: [Int]

    /// Creates the box [lower, upper).
    public init(lower: [Int], upper: [Int]) { self.lower = lower; self.upper = upper }

    /// The box of every voxel of a grid of `size`.
    public init(_ size: GridSize) { self.init(lower: [0, 0, 0], upper: [size.x, size.y, size.z]) }

    /// Number of voxels inside (0 when empty).
    public var voxelCount: Int { (0..<3).reduce(1) { $0 * max(0, upper[$1] - lower[$1]) } }

    /// The box grown by `millimetres` on every side (whole voxels, rounded up, along each
    /// axis of `spacing` mm) and clipped to `region`.
    public func grown(byMM millimetres: Double, spacing: [Double], within region: VoxelBox) -> VoxelBox {
        var box = self
        for a in 0..<3 {
            let extent = Double(region.upper[a] - region.lower[a])
            let margin = Int(min(extent, (millimetres / spacing[a]).rounded(.up)))
            box.lower[a] = max(region.lower[a], lower[a] - margin)
            box.upper[a] = min(region.upper[a], upper[a] + margin)
        }
        return box
    }

    /// The voxels inside both boxes; nil when they do not overlap.
    public func intersection(_ other: VoxelBox) -> VoxelBox? {
        let box = VoxelBox(
            lower: (0..<3).map { max(lower[$0], other.lower[$0]) }, upper: (0..<3).map { min(upper[$0], other.upper[$0]) })
        return (0..<3).allSatisfy { box.lower[$0] < box.upper[$0] } ? box : nil
    }
}
