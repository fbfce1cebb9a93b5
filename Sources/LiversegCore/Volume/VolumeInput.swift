/// A voxel type a CT volume may arrive in.
public protocol HounsfieldVoxel {
    /// The voxel's value in HU as a float.
    var hounsfield: Float { get }
}
extension Int16: HounsfieldVoxel { @inlinable public var hounsfield: Float { Float(self) } }
extension Int32: HounsfieldVoxel { @inlinable public var hounsfield: Float { Float(self) } }
extension Float: HounsfieldVoxel { @inlinable public var hounsfield: Float { self } }

/// Borrowed voxel storage of a caller's volume, x fastest.
public enum VoxelStorage {
    case int16(UnsafePointer<Int16>)
    case int32(UnsafePointer<Int32>)
    case float32(UnsafePointer<Float>)
}

/// A CT volume borrowed for the duration of one call, with its geometry.
public struct VolumeInput {
    /// The voxels.
    public var voxels: VoxelStorage
    /// Extents along i, j, k.
    public var size: GridSize
    /// Voxel size in mm along i, j, k.
    public var spacing: [Double]
    /// Optional row-major 4×4 voxel-index → RAS mm matrix; nil: axes already canonical.
    public var ijkToRAS: [Double]?

    /// Creates a description of a caller's volume.
    public init(voxels: VoxelStorage, size: GridSize, spacing: [Double], ijkToRAS: [Double]?) {
        self.voxels = voxels
        self.size = size
        self.spacing = spacing
        self.ijkToRAS = ijkToRAS
    }

    /// Throws `invalidArgument` naming the first problem with the geometry or values.
    public func validate() throws {
        guard size.x >= 1, size.y >= 1, size.z >= 1 else {
            throw LiversegError.invalidArgument("volume dims \(size) must all be at least 1")
        }
        let voxelCount = try checkedProduct([size.x, size.y, size.z, 8], what: "volume dims") / 8
        guard spacing.count == 3, spacing.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw LiversegError.invalidArgument("volume spacing \(spacing) must be three finite values > 0 mm")
        }
        if let m = ijkToRAS {
            guard m.count == 16, m.allSatisfy(\.isFinite) else {
                throw LiversegError.invalidArgument("ijk_to_ras must be 16 finite numbers")
            }
            for axis in 0..<3 {
                let norm = (0..<3).map { m[$0 * 4 + axis] * m[$0 * 4 + axis] }.reduce(0, +).squareRoot()
                guard abs(norm - spacing[axis]) <= 1e-3 * spacing[axis] else {
                    throw LiversegError.invalidArgument(
                        "ijk_to_ras column \(axis) has length \(norm) mm but spacing[\(axis)] is \(spacing[axis]) mm")
                }
            }
        }
        if case .float32(let p) = voxels {
            if let bad = (0..<voxelCount).first(where: { p[$0].isNaN }) {
                throw LiversegError.invalidArgument("volume voxel \(bad) (flat index) is NaN")
            }
        }
    }
}
