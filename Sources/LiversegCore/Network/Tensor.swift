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

/// A stack of feature volumes: `channels` × z × y × x values, x fastest — PyTorch's NCDHW
/// layout for one sample, so weights and activations compare directly with torch.
public final class Tensor<Scalar: NetworkScalar>: @unchecked Sendable {
    /// Number of feature channels.
    public let channels: Int
    /// Spatial extent.
    public let size: GridSize
    /// The values, channel-major.
    public let storage: Buffer<Scalar>

    /// A tensor, zero-filled when `zeroed`.
    public init(channels: Int, size: GridSize, zeroed: Bool = true) throws {
        let count = try checkedProduct([channels, size.x, size.y, size.z], what: "tensor")
        self.channels = channels
        self.size = size
        self.storage = try Buffer(count: count, zeroed: zeroed)
    }

    /// Wraps existing storage, which must hold channels × voxelCount values.
    public init(channels: Int, size: GridSize, storage: Buffer<Scalar>) {
        precondition(storage.count == channels * size.voxelCount)
        self.channels = channels
        self.size = size
        self.storage = storage
    }

    /// Pointer to the first value of channel `c`.
    @inlinable public func channel(_ c: Int) -> UnsafeMutablePointer<Scalar> {
        storage.pointer + c * size.voxelCount
    }
}
