import LiversegSupport

/// The element type of an image's voxels.
public enum VoxelType: String, CaseIterable, Sendable {
    /// Unsigned and signed integers of 8 to 64 bits, IEEE floats of 32 and 64 bits.
    case uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32, float64

    /// Bytes per voxel.
    public var size: Int {
        switch self {
        case .uint8, .int8: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        }
    }

    /// Whether the type is a floating-point type.
    public var isFloatingPoint: Bool { self == .float32 || self == .float64 }

    /// Element `index` of voxels of this type at `raw` (host byte order), as a Double.
    @inlinable
    public func storedValue(in raw: UnsafeRawPointer, at index: Int) -> Double {
        let offset = index * size
        switch self {
        case .uint8: return raw.loadUnaligned(fromByteOffset: offset, as: UInt8.self).doubleValue
        case .int8: return raw.loadUnaligned(fromByteOffset: offset, as: Int8.self).doubleValue
        case .uint16: return raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self).doubleValue
        case .int16: return raw.loadUnaligned(fromByteOffset: offset, as: Int16.self).doubleValue
        case .uint32: return raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self).doubleValue
        case .int32: return raw.loadUnaligned(fromByteOffset: offset, as: Int32.self).doubleValue
        case .uint64: return raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self).doubleValue
        case .int64: return raw.loadUnaligned(fromByteOffset: offset, as: Int64.self).doubleValue
        case .float32: return raw.loadUnaligned(fromByteOffset: offset, as: Float.self).doubleValue
        case .float64: return raw.loadUnaligned(fromByteOffset: offset, as: Double.self)
        }
    }
}

/// A Swift scalar type that can be an image voxel.
public protocol ImageScalar {
    /// The matching voxel type.
    static var voxelType: VoxelType { get }
    /// The value as a Double (exact for every type but 64-bit integers beyond 2^53).
    var doubleValue: Double { get }
}
extension UInt8: ImageScalar {
    public static let voxelType = VoxelType.uint8; @inlinable public var doubleValue: Double { Double(self) }
}
extension Int8: ImageScalar {
    public static let voxelType = VoxelType.int8; @inlinable public var doubleValue: Double { Double(self) }
}
extension UInt16: ImageScalar {
    public static let voxelType = VoxelType.uint16; @inlinable public var doubleValue: Double { Double(self) }
}
extension Int16: ImageScalar {
    public static let voxelType = VoxelType.int16; @inlinable public var doubleValue: Double { Double(self) }
}
extension UInt32: ImageScalar {
    public static let voxelType = VoxelType.uint32; @inlinable public var doubleValue: Double { Double(self) }
}
extension Int32: ImageScalar {
    public static let voxelType = VoxelType.int32; @inlinable public var doubleValue: Double { Double(self) }
}
extension UInt64: ImageScalar {
    public static let voxelType = VoxelType.uint64; @inlinable public var doubleValue: Double { Double(self) }
}
extension Int64: ImageScalar {
    public static let voxelType = VoxelType.int64; @inlinable public var doubleValue: Double { Double(self) }
}
extension Float: ImageScalar {
    public static let voxelType = VoxelType.float32; @inlinable public var doubleValue: Double { Double(self) }
}
extension Double: ImageScalar {
    public static let voxelType = VoxelType.float64; @inlinable public var doubleValue: Double { self }
}

/// A 3D image: voxels of one type, x fastest, with the geometry that places them in the
/// patient. Every reader produces one and every writer takes one, whatever the format.
public struct Image: Equatable, Sendable {
    /// The voxels' element type.
    public let voxelType: VoxelType
    /// size.voxelCount × voxelType.size bytes, little-endian, voxel (i, j, k) at
    /// i + nx·(j + ny·k).
    public let data: [UInt8]
    /// Extents along i, j, k (a 2D image has z = 1).
    public let size: GridSize
    /// Row-major 4×4 matrix mapping voxel indices (i, j, k, 1) to RAS millimetres (NIfTI's
    /// sform, 3D Slicer's IJKToRAS). Its column norms are the voxel spacing.
    public let ijkToRAS: [Double]
    /// Stored values map to intensities as value·slope + intercept (NIfTI scl_slope,
    /// scl_inter); 1 and 0 for the other formats.
    public let slope: Double
    /// See `slope`.
    public let intercept: Double

    /// Creates an image, checking that the data length matches, the matrix is 16 finite
    /// numbers with an invertible 3×3 part, and the scaling is finite with slope ≠ 0.
    public init(
        voxelType: VoxelType, data: [UInt8], size: GridSize, ijkToRAS: [Double],
        slope: Double = 1, intercept: Double = 0
    ) throws {
        guard size.x >= 1, size.y >= 1, size.z >= 1 else {
            throw LiversegError.invalidArgument("image size \(size) must be at least 1 along every axis")
        }
        let bytes = try checkedProduct([size.x, size.y, size.z, voxelType.size], what: "image size")
        guard data.count == bytes else {
            throw LiversegError.invalidArgument("image data has \(data.count) bytes; \(size) \(voxelType) voxels need \(bytes)")
        }
        try validateIJKToRAS(ijkToRAS)
        guard slope.isFinite, slope != 0, intercept.isFinite else {
            throw LiversegError.invalidArgument(
                "intensity scaling slope \(slope), intercept \(intercept) must be finite with slope ≠ 0")
        }
        self.voxelType = voxelType
        self.data = data
        self.size = size
        self.ijkToRAS = ijkToRAS
        self.slope = slope
        self.intercept = intercept
    }

    /// Creates an image holding `values` (x fastest) with the given geometry.
    public init<T: ImageScalar>(values: [T], size: GridSize, ijkToRAS: [Double]) throws {
        let bytes = values.withUnsafeBytes { Array($0) }
        try self.init(voxelType: T.voxelType, data: bytes, size: size, ijkToRAS: ijkToRAS)
    }

    /// Voxel size in mm along i, j, k: the column norms of `ijkToRAS`.
    public var spacing: [Double] {
        (0..<3).map { (c: Int) -> Double in
            let (x, y, z) = (ijkToRAS[c], ijkToRAS[4 + c], ijkToRAS[8 + c])
            return (x * x + y * y + z * z).squareRoot()
        }
    }

    /// Whether intensities are the stored values unchanged (slope 1, intercept 0).
    public var isUnscaled: Bool { slope == 1 && intercept == 0 }

    /// The stored value of voxel `index` (flat, x fastest), without scaling.
    @inlinable
    public func storedValue(at index: Int) -> Double {
        data.withUnsafeBytes { raw in voxelType.storedValue(in: raw.baseAddress!, at: index) }
    }

    /// The intensity (scaling applied) of voxel `index` (flat, x fastest).
    @inlinable
    public func intensity(at index: Int) -> Double { storedValue(at: index) * slope + intercept }

    /// The intensity of every voxel (scaling applied), transformed by `transform`.
    public func mapIntensities<T>(_ transform: (Double) -> T) -> [T] {
        let unscaled = isUnscaled
        return (0..<size.voxelCount).map { transform(unscaled ? storedValue(at: $0) : intensity(at: $0)) }
    }

    /// The stored values as `T` when `T` is the voxel type, else nil.
    public func values<T: ImageScalar>(as _: T.Type) -> [T]? {
        guard T.voxelType == voxelType else { return nil }
        return data.withUnsafeBytes { raw in
            (0..<size.voxelCount).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.stride, as: T.self) }
        }
    }

    /// A binary mask: 1 where the intensity is non-zero (NaN counts as zero), else 0.
    public func mask() -> [UInt8] { mapIntensities { $0 != 0 && !$0.isNaN ? 1 : 0 } }

    /// The intensities as Float (scaling applied).
    public func floatIntensities() -> [Float] { mapIntensities { Float($0) } }

    /// The same image with scaling applied to the stored values: itself when unscaled,
    /// else float32 data for types up to 16 bits and float32, float64 data otherwise.
    public func applyingScaling() throws -> Image {
        if isUnscaled { return self }
        let narrow: Set<VoxelType> = [.uint8, .int8, .uint16, .int16, .float32]
        if narrow.contains(voxelType) {
            return try Image(values: floatIntensities(), size: size, ijkToRAS: ijkToRAS)
        }
        return try Image(values: mapIntensities { $0 }, size: size, ijkToRAS: ijkToRAS)
    }

    /// The same geometry holding other voxels (e.g. a mask for this CT).
    public func withVoxels<T: ImageScalar>(_ values: [T]) throws -> Image {
        try Image(values: values, size: size, ijkToRAS: ijkToRAS)
    }

    /// Whether `other` has the same grid: size, and IJK→RAS equal to `tolerance` mm.
    public func hasSameGeometry(as other: Image, tolerance: Double = 1e-4) -> Bool {
        size == other.size && zip(ijkToRAS, other.ijkToRAS).allSatisfy { abs($0 - $1) <= tolerance }
    }
}

/// Throws unless `m` is 16 finite numbers whose 3×3 part is invertible and whose last row
/// is (0, 0, 0, 1).
func validateIJKToRAS(_ m: [Double]) throws {
    guard m.count == 16, m.allSatisfy(\.isFinite) else {
        throw LiversegError.invalidArgument("IJK→RAS matrix must be 16 finite numbers")
    }
    guard m[12] == 0, m[13] == 0, m[14] == 0, m[15] == 1 else {
        throw LiversegError.invalidArgument("IJK→RAS matrix last row \(Array(m[12...])) must be (0, 0, 0, 1)")
    }
    let det = m[0] * (m[5] * m[10] - m[6] * m[9]) - m[1] * (m[4] * m[10] - m[6] * m[8]) + m[2] * (m[4] * m[9] - m[5] * m[8])
    guard det != 0, det.isFinite else {
        throw LiversegError.invalidArgument("IJK→RAS matrix is singular (a zero spacing or two parallel axes)")
    }
}

/// The IJK→RAS matrix of a volume given its axis vectors (`columns`, spacing included) and
/// origin in a space whose axes are RAS's multiplied by `flip` (LPS: (−1, −1, 1)).
func ijkToRAS(columns: [[Double]], origin: [Double], flip: [Double]) -> [Double] {
    var m = [Double](repeating: 0, count: 16)
    for r in 0..<3 {
        for c in 0..<3 { m[r * 4 + c] = flip[r] * columns[c][r] }
        m[r * 4 + 3] = flip[r] * origin[r]
    }
    m[15] = 1
    return m
}

/// The axis vectors (spacing included) and origin of an IJK→RAS matrix in a space whose
/// axes are RAS's multiplied by `flip`: the inverse of `ijkToRAS(columns:origin:flip:)`.
func axisVectorsAndOrigin(_ m: [Double], flip: [Double]) -> (columns: [[Double]], origin: [Double]) {
    let columns = (0..<3).map { c in (0..<3).map { r in flip[r] * m[r * 4 + c] } }
    return (columns, (0..<3).map { flip[$0] * m[$0 * 4 + 3] })
}

/// Axis signs of LPS (ITK, DICOM, MetaImage, Slicer's NRRD files) relative to RAS.
let lpsFlip: [Double] = [-1, -1, 1]
