import CLiverseg
#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegImageIO

/// liverseg_dtype values and the voxel types they name.
let dtypes: [(liverseg_dtype, VoxelType)] = [
    (LIVERSEG_DTYPE_INT16, .int16), (LIVERSEG_DTYPE_INT32, .int32), (LIVERSEG_DTYPE_FLOAT32, .float32),
    (LIVERSEG_DTYPE_UINT8, .uint8), (LIVERSEG_DTYPE_INT8, .int8), (LIVERSEG_DTYPE_UINT16, .uint16),
    (LIVERSEG_DTYPE_UINT32, .uint32), (LIVERSEG_DTYPE_UINT64, .uint64), (LIVERSEG_DTYPE_INT64, .int64),
    (LIVERSEG_DTYPE_FLOAT64, .float64),
]

/// The voxel type a liverseg_dtype names, or an error naming `field`.
func voxelType(_ dtype: liverseg_dtype, _ field: String) throws -> VoxelType {
    guard let type = dtypes.first(where: { $0.0 == dtype })?.1 else {
        throw LiversegError.invalidArgument("\(field) \(dtype.rawValue) is not a liverseg_dtype")
    }
    return type
}

/// 0.1's image voxel type codes (liverseg_image_info.voxel_type_0_1), 1 to 10 in this order.
private let voxelTypes01: [VoxelType] = [.uint8, .int8, .uint16, .int16, .uint32, .int32, .uint64, .int64, .float32, .float64]

/// struct_size of each released liverseg_image_info layout, oldest first.
private let imageInfoSizes = [MemoryLayout<liverseg_image_info>.offset(of: \.dtype)!, MemoryLayout<liverseg_image_info>.size]

/// A C path argument as a Swift string.
private func pathArgument(_ path: UnsafePointer<CChar>?) throws -> String {
    String(cString: try required(path, "path"))
}

@_cdecl("liverseg_image_read")
public func liverseg_image_read(
    _ path: UnsafePointer<CChar>?, _ info: UnsafeMutablePointer<liverseg_image_info>?,
    _ outData: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> liverseg_status {
    outData?.pointee = nil
    return boundary("liverseg_image_read") {
        let info = try required(info, "info")
        let outData = try required(outData, "out_data")
        let declared = info.pointee.struct_size
        try checkStructSize(declared, released: imageInfoSizes, "info")
        let image = try readImage(try pathArgument(path))
        guard let buffer = malloc(max(image.data.count, 1)) else {
            throw LiversegError.outOfMemory("could not allocate \(image.data.count) bytes of voxels")
        }
        image.data.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var out = liverseg_image_info()
        out.struct_size = declared
        out.voxel_type_0_1 = Int32(voxelTypes01.firstIndex(of: image.voxelType)! + 1)
        out.dtype = dtypes.first { $0.1 == image.voxelType }!.0
        out.dims = (image.size.x, image.size.y, image.size.z)
        let spacing = image.spacing
        out.spacing = (spacing[0], spacing[1], spacing[2])
        withUnsafeMutableBytes(of: &out.ijk_to_ras) { raw in
            for (i, v) in image.ijkToRAS.enumerated() { raw.storeBytes(of: v, toByteOffset: 8 * i, as: Double.self) }
        }
        out.scl_slope = image.slope
        out.scl_inter = image.intercept
        // Never beyond the caller's struct: a 0.1 program's has no dtype.
        withUnsafeBytes(of: &out) { UnsafeMutableRawPointer(info).copyMemory(from: $0.baseAddress!, byteCount: declared) }
        outData.pointee = buffer
    }
}

@_cdecl("liverseg_image_write")
public func liverseg_image_write(
    _ path: UnsafePointer<CChar>?, _ data: UnsafeRawPointer?,
    _ info: UnsafePointer<liverseg_image_info>?
) -> liverseg_status {
    boundary("liverseg_image_write") {
        let path = try pathArgument(path)
        let data = try required(data, "data")
        let info = try required(info, "info")
        let i = try versionedParams(info, defaults: liverseg_image_info(), released: imageInfoSizes, "info")
        let type: VoxelType
        if i.struct_size == imageInfoSizes[0] {
            guard (1...voxelTypes01.count).contains(Int(i.voxel_type_0_1)) else {
                throw LiversegError.invalidArgument("info->voxel_type \(i.voxel_type_0_1) is not a 0.1 voxel type code (1...10)")
            }
            type = voxelTypes01[Int(i.voxel_type_0_1) - 1]
        } else {
            type = try voxelType(i.dtype, "info->dtype")
        }
        let dims = [i.dims.0, i.dims.1, i.dims.2]
        let count = try checkedProduct(dims + [type.size], what: "info->dims")
        let matrix = withUnsafeBytes(of: i.ijk_to_ras) { raw in (0..<16).map { raw.load(fromByteOffset: 8 * $0, as: Double.self) }
        }
        let bytes = Array(UnsafeRawBufferPointer(start: data, count: count))
        let image = try Image(
            voxelType: type, data: bytes, size: GridSize(x: dims[0], y: dims[1], z: dims[2]),
            ijkToRAS: matrix, slope: i.scl_slope, intercept: i.scl_inter)
        try writeImage(image, to: path)
    }
}

@_cdecl("liverseg_free")
public func liverseg_free(_ buffer: UnsafeMutableRawPointer?) {
    free(buffer)
}
