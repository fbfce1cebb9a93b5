import LiversegSupport
import LiversegImageIO

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

    /// Lends `data`, voxels of any image voxel type (x fastest, host byte order), to `body`
    /// as a volume: int16, int32 and float32 in place, every other type converted to float32
    /// HU first (a float64 value beyond float32's range becomes ±Inf, which `validate`
    /// rejects). Only the dims are checked here; see `validate`.
    public static func lending<R>(
        _ data: UnsafeRawPointer, type: VoxelType, size: GridSize, spacing: [Double],
        ijkToRAS: [Double]?, _ body: (VolumeInput) throws -> R
    ) throws -> R {
        func lend(_ voxels: VoxelStorage) throws -> R {
            try body(VolumeInput(voxels: voxels, size: size, spacing: spacing, ijkToRAS: ijkToRAS))
        }
        let count = try voxelCount(size)
        switch type {
        case .int16: return try data.withMemoryRebound(to: Int16.self, capacity: count) { try lend(.int16($0)) }
        case .int32: return try data.withMemoryRebound(to: Int32.self, capacity: count) { try lend(.int32($0)) }
        case .float32: return try data.withMemoryRebound(to: Float.self, capacity: count) { try lend(.float32($0)) }
        default:
            let converted = try FloatBuffer(count: count, zeroed: false)
            for i in 0..<count { converted.pointer[i] = Float(type.storedValue(in: data, at: i)) }
            return try withExtendedLifetime(converted) { try lend(.float32(converted.pointer)) }
        }
    }

    /// The number of voxels of a volume of `size`, or an error when an extent is 0 or the
    /// product overflows.
    private static func voxelCount(_ size: GridSize) throws -> Int {
        guard size.x >= 1, size.y >= 1, size.z >= 1 else {
            throw LiversegError.invalidArgument("volume dims \(size) must all be at least 1")
        }
        return try checkedProduct([size.x, size.y, size.z, 8], what: "volume dims") / 8
    }

    /// Throws `invalidArgument` naming the first problem with the geometry or values.
    public func validate() throws {
        let voxelCount = try Self.voxelCount(size)
        guard spacing.count == 3, spacing.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw LiversegError.invalidArgument("volume spacing \(spacing) must be three finite values > 0 mm")
        }
        if let m = ijkToRAS {
            guard m.count == 16, m.allSatisfy(\.isFinite) else {
                throw LiversegError.invalidArgument("ijk_to_ras must be 16 finite numbers")
            }
            guard m[12] == 0, m[13] == 0, m[14] == 0, m[15] == 1 else {
                throw LiversegError.invalidArgument(
                    "ijk_to_ras's last row is (\(m[12]), \(m[13]), \(m[14]), \(m[15])) but an affine voxel → RAS matrix has (0, 0, 0, 1)"
                )
            }
            for axis in 0..<3 {
                let norm = (0..<3).map { m[$0 * 4 + axis] * m[$0 * 4 + axis] }.reduce(0, +).squareRoot()
                guard abs(norm - spacing[axis]) <= 1e-3 * spacing[axis] else {
                    throw LiversegError.invalidArgument(
                        "ijk_to_ras column \(axis) has length \(norm) mm but spacing[\(axis)] is \(spacing[axis]) mm")
                }
            }
            // Relative to the columns' lengths: 1 for orthogonal columns, 0 for parallel ones.
            let determinant =
                m[0] * (m[5] * m[10] - m[6] * m[9]) - m[1] * (m[4] * m[10] - m[6] * m[8])
                + m[2] * (m[4] * m[9] - m[5] * m[8])
            guard abs(determinant) > 1e-6 * spacing[0] * spacing[1] * spacing[2] else {
                throw LiversegError.invalidArgument(
                    "ijk_to_ras is singular (its 3×3 part has determinant \(determinant)): its columns must span 3-D space")
            }
        }
        // One Inf would spread through the resampling and the network into NaN probabilities.
        if case .float32(let p) = voxels {
            if let bad = (0..<voxelCount).first(where: { !p[$0].isFinite }) {
                throw LiversegError.invalidArgument(
                    "volume voxel \(bad) (flat index) is \(p[bad]) as float32; NaN and ±Inf are not HU values")
            }
        }
    }
}

extension VolumeInput {
    /// Lends the voxels of `box` (inside the volume) to `body` as a volume of their own: a
    /// copy in the same voxel type, with the same spacing and axes, its ijkToRAS moved to the
    /// box's first voxel. The whole volume is lent as it is, without a copy.
    public func withCropped<R>(to box: VoxelBox, _ body: (VolumeInput) throws -> R) throws -> R {
        let whole = VoxelBox(size)
        guard box.lower.count == 3, box.upper.count == 3, box.voxelCount > 0, box.intersection(whole) == box else {
            throw LiversegError.invalidArgument("crop \(box.lower)..<\(box.upper) is not a box inside \(size)")
        }
        if box == whole { return try body(self) }
        var origin = ijkToRAS
        if let m = ijkToRAS {
            for row in 0..<3 {
                origin![row * 4 + 3] = m[row * 4 + 3] + (0..<3).reduce(0) { $0 + m[row * 4 + $1] * Double(box.lower[$1]) }
            }
        }
        func crop<T>(_ source: UnsafePointer<T>, _ storage: (UnsafePointer<T>) -> VoxelStorage) throws -> R {
            let copy = try Buffer<T>(count: box.voxelCount, zeroed: false)
            box.crop(source, size: size, into: copy.pointer)
            return try withExtendedLifetime(copy) {
                try body(VolumeInput(voxels: storage(copy.pointer), size: box.size, spacing: spacing, ijkToRAS: origin))
            }
        }
        switch voxels {
        case .int16(let p): return try crop(p) { .int16($0) }
        case .int32(let p): return try crop(p) { .int32($0) }
        case .float32(let p): return try crop(p) { .float32($0) }
        }
    }
}
