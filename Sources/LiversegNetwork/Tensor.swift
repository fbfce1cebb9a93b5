import LiversegSupport

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
