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
