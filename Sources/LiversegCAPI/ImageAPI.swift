import CLiverseg
import LiversegCore
#if canImport(Glibc)
import Glibc
#endif

/// C voxel type codes, in header order.
private let voxelTypes: [(liverseg_voxel_type, VoxelType)] = [
    (LIVERSEG_VOXEL_UINT8, .uint8), (LIVERSEG_VOXEL_INT8, .int8), (LIVERSEG_VOXEL_UINT16, .uint16),
    (LIVERSEG_VOXEL_INT16, .int16), (LIVERSEG_VOXEL_UINT32, .uint32), (LIVERSEG_VOXEL_INT32, .int32),
    (LIVERSEG_VOXEL_UINT64, .uint64), (LIVERSEG_VOXEL_INT64, .int64), (LIVERSEG_VOXEL_FLOAT32, .float32),
    (LIVERSEG_VOXEL_FLOAT64, .float64),
]

/// A C path argument as a Swift string.
private func pathArgument(_ path: UnsafePointer<CChar>?) throws -> String {
    String(cString: try required(path, "path"))
}

@_cdecl("liverseg_image_read")
public func liverseg_image_read(_ path: UnsafePointer<CChar>?, _ info: UnsafeMutablePointer<liverseg_image_info>?,
                                _ outData: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> liverseg_status {
    outData?.pointee = nil
    return boundary("liverseg_image_read") {
        let info = try required(info, "info")
        let outData = try required(outData, "out_data")
        try checkStructSize(info.pointee.struct_size, expected: MemoryLayout<liverseg_image_info>.size, "info")
        let image = try readImage(try pathArgument(path))
        guard let buffer = malloc(max(image.data.count, 1)) else {
            throw LiversegError.outOfMemory("could not allocate \(image.data.count) bytes of voxels")
        }
        image.data.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var out = liverseg_image_info()
        out.struct_size = MemoryLayout<liverseg_image_info>.size
        out.voxel_type = voxelTypes.first { $0.1 == image.voxelType }?.0 ?? LIVERSEG_VOXEL_UINT8
        out.dims = (image.size.x, image.size.y, image.size.z)
        let spacing = image.spacing
        out.spacing = (spacing[0], spacing[1], spacing[2])
        withUnsafeMutableBytes(of: &out.ijk_to_ras) { raw in
            for (i, v) in image.ijkToRAS.enumerated() { raw.storeBytes(of: v, toByteOffset: 8 * i, as: Double.self) }
        }
        out.scl_slope = image.slope
        out.scl_inter = image.intercept
        info.pointee = out
        outData.pointee = buffer
    }
}

@_cdecl("liverseg_image_write")
public func liverseg_image_write(_ path: UnsafePointer<CChar>?, _ data: UnsafeRawPointer?,
                                 _ info: UnsafePointer<liverseg_image_info>?) -> liverseg_status {
    boundary("liverseg_image_write") {
        let path = try pathArgument(path)
        let data = try required(data, "data")
        let i = try required(info, "info").pointee
        try checkStructSize(i.struct_size, expected: MemoryLayout<liverseg_image_info>.size, "info")
        guard let type = voxelTypes.first(where: { $0.0 == i.voxel_type })?.1 else {
            throw LiversegError.invalidArgument("info->voxel_type \(i.voxel_type.rawValue) is not a liverseg_voxel_type")
        }
        let dims = [i.dims.0, i.dims.1, i.dims.2]
        let count = try checkedProduct(dims + [type.size], what: "info->dims")
        let matrix = withUnsafeBytes(of: i.ijk_to_ras) { raw in (0..<16).map { raw.load(fromByteOffset: 8 * $0, as: Double.self) } }
        let bytes = Array(UnsafeRawBufferPointer(start: data, count: count))
        let image = try Image(voxelType: type, data: bytes, size: GridSize(x: dims[0], y: dims[1], z: dims[2]),
                              ijkToRAS: matrix, slope: i.scl_slope, intercept: i.scl_inter)
        try writeImage(image, to: path)
    }
}

@_cdecl("liverseg_free")
public func liverseg_free(_ buffer: UnsafeMutableRawPointer?) {
    free(buffer)
}
