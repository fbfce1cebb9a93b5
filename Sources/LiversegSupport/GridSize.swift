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

    /// The (x, y, z) coordinates of flat index `i` in x-fastest order.
    public func coordinates(ofIndex i: Int) -> [Int] { [i % x, (i / x) % y, i / (x * y)] }

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

    /// The box's extents.
    public var size: GridSize { GridSize(x: upper[0] - lower[0], y: upper[1] - lower[1], z: upper[2] - lower[2]) }

    /// Copies the box's voxels of `grid` (of `size`, x fastest; the box inside it) into
    /// `crop` (the box's voxels, x fastest).
    public func crop<T>(_ grid: UnsafePointer<T>, size: GridSize, into crop: UnsafeMutablePointer<T>) {
        let extent = self.size
        for k in 0..<extent.z {
            for j in 0..<extent.y {
                let from = grid + ((lower[2] + k) * size.y + lower[1] + j) * size.x + lower[0]
                (crop + (k * extent.y + j) * extent.x).update(from: from, count: extent.x)
            }
        }
    }

    /// The inverse of `crop`: writes `crop` into the box's voxels of `grid` and `outside`
    /// into every other voxel.
    public func paste<T>(_ crop: UnsafePointer<T>, into grid: UnsafeMutablePointer<T>, size: GridSize, outside: T) {
        let extent = self.size
        for z in 0..<size.z {
            for y in 0..<size.y {
                let row = grid + (z * size.y + y) * size.x
                let (k, j) = (z - lower[2], y - lower[1])
                guard (0..<extent.z).contains(k), (0..<extent.y).contains(j) else {
                    row.update(repeating: outside, count: size.x)
                    continue
                }
                row.update(repeating: outside, count: lower[0])
                (row + lower[0]).update(from: crop + (k * extent.y + j) * extent.x, count: extent.x)
                (row + upper[0]).update(repeating: outside, count: size.x - upper[0])
            }
        }
    }
}
