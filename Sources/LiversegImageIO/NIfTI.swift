import LiversegSupport

/// NIfTI-1 single files (.nii; .nii.gz once inflated), read and written by liverseg's own
/// code: a 348-byte header, a 4-byte extension flag, the voxels from vox_offset.
public enum NIfTI {
    private static let datatypeCodes: [(Int, VoxelType)] = [
        (2, .uint8), (4, .int16), (8, .int32), (16, .float32), (64, .float64),
        (256, .int8), (512, .uint16), (768, .uint32), (1024, .int64), (1280, .uint64),
    ]
    /// Bytes of a NIfTI-1 header.
    static let headerSize = 348
    private static let dataOffset = 352

    /// What a NIfTI-1 header says about its voxels: the first step of reading, before
    /// `decode` places the data (the same two steps as `NRRD` and `MetaImage`).
    public struct Header: Equatable, Sendable {
        /// The voxels' element type.
        public let voxelType: VoxelType
        /// Extents along i, j, k.
        public let size: GridSize
        /// The voxels' byte order.
        public let bigEndian: Bool
        /// Where the voxels start in the (inflated) file.
        public let voxOffset: Int
        /// IJK→RAS from the sform, the qform or pixdim (see `parseHeader`).
        public let ijkToRAS: [Double]
        /// scl_slope (1 where unset or not finite).
        public let slope: Double
        /// scl_inter (0 where unset or not finite).
        public let intercept: Double

        /// Bytes of the whole file: vox_offset plus the voxels (a compressed file is
        /// inflated to this size and no further).
        public func fileSize() throws -> Int {
            let data = try checkedProduct([size.x, size.y, size.z, voxelType.size], what: "NIfTI dim")
            let (total, overflow) = voxOffset.addingReportingOverflow(data)
            guard !overflow else { throw bad("vox_offset \(voxOffset) plus \(data) bytes of voxels overflows") }
            return total
        }
    }

    private static func bad(_ m: String) -> LiversegError { .invalidArgument("NIfTI header: \(m)") }

    /// Reads and checks a NIfTI-1 header: either byte order; geometry from the sform when
    /// sform_code > 0, else the qform when qform_code > 0, else nibabel's fallback
    /// (diag(−dx, dy, dz) centred on the volume); vox_offset 0 means 352; negative or zero
    /// pixdim[1...3] are taken as their absolute value, 0 as 1 (as nibabel fixes them); only
    /// 3D data (dims 4...7 equal to 1) is accepted. Needs only the first 348 bytes. Pure.
    public static func parseHeader(_ bytes: ArraySlice<UInt8>) throws -> Header {
        guard bytes.count >= headerSize else {
            throw bad("file has \(bytes.count) bytes, fewer than the 348-byte header (truncated)")
        }
        let little = BinaryFields(bytes: bytes, bigEndian: false)
        let sizeLE = little.int32(0)
        let f: BinaryFields
        if sizeLE == headerSize {
            f = little
        } else if BinaryFields(bytes: bytes, bigEndian: true).int32(0) == headerSize {
            f = BinaryFields(bytes: bytes, bigEndian: true)
        } else if sizeLE == 540 {
            throw LiversegError.unsupported("NIfTI header: sizeof_hdr 540 is NIfTI-2; liverseg reads NIfTI-1")
        } else {
            throw bad("sizeof_hdr is \(sizeLE), not 348 (not a NIfTI-1 file)")
        }

        let magic = Array(bytes[(bytes.startIndex + 344)..<(bytes.startIndex + 348)])
        if magic == Array("ni1\0".utf8) {
            throw LiversegError.unsupported("NIfTI header: magic \"ni1\" is a .hdr/.img pair; liverseg reads single .nii files")
        }
        guard magic == Array("n+1\0".utf8) else { throw bad("magic is \(magic), not \"n+1\"") }

        let ndim = f.int16(40)
        guard (1...7).contains(ndim) else { throw bad("dim[0] = \(ndim) must be in 1...7") }
        var dims = [Int](repeating: 1, count: 7)
        for d in 1...ndim {
            let n = f.int16(40 + 2 * d)
            guard n >= 1 else { throw bad("dim[\(d)] = \(n) must be at least 1") }
            dims[d - 1] = n
        }
        if let extra = (3..<7).first(where: { dims[$0] != 1 }) {
            throw LiversegError.unsupported("NIfTI header: dim[\(extra + 1)] = \(dims[extra]); liverseg reads 3D images only")
        }
        let code = f.int16(70)
        guard let type = datatypeCodes.first(where: { $0.0 == code })?.1 else {
            throw LiversegError.unsupported(
                "NIfTI header: datatype \(code) (liverseg reads integer and float types of 8 to 64 bits)")
        }
        // 0 (left unset by some writers) means right after the header and extension flag.
        let voxOffset = f.float32(108) == 0 ? Double(dataOffset) : f.float32(108)
        guard voxOffset.isFinite, voxOffset >= Double(headerSize), voxOffset <= Double(maximumDataBytes) else {
            throw bad("vox_offset \(voxOffset) must lie between 348 and \(maximumDataBytes)")
        }
        var slope = f.float32(112), intercept = f.float32(116)
        if !slope.isFinite || slope == 0 { (slope, intercept) = (1, 0) }
        if !intercept.isFinite { intercept = 0 }
        let header = Header(
            voxelType: type, size: GridSize(x: dims[0], y: dims[1], z: dims[2]), bigEndian: f.bigEndian,
            voxOffset: Int(voxOffset), ijkToRAS: try geometry(f, dims: dims), slope: slope, intercept: intercept)
        _ = try header.fileSize()  // refuses a voxel count or file size that overflows
        return header
    }

    /// Decodes the voxels of `file`, the whole (inflated) file `header` was read from. The
    /// voxels are moved into place within `file`'s own storage, not copied, when the caller
    /// hands over its only reference. Pure.
    public static func decode(_ header: Header, file: consuming [UInt8]) throws -> Image {
        guard header.voxOffset <= file.count else {
            throw bad("vox_offset \(header.voxOffset) must lie between 348 and the file size \(file.count)")
        }
        let voxels = try decodeVoxels(
            consume file, from: header.voxOffset, type: header.voxelType, size: header.size, bigEndian: header.bigEndian,
            format: "NIfTI")
        do {
            return try Image(
                voxelType: header.voxelType, data: voxels, size: header.size, ijkToRAS: header.ijkToRAS,
                slope: header.slope, intercept: header.intercept)
        } catch LiversegError.invalidArgument(let m) {
            throw bad(m)
        }
    }

    /// Parses a NIfTI-1 file's (already inflated) bytes: `parseHeader`, then `decode`. Pure.
    public static func parse(_ bytes: ArraySlice<UInt8>) throws -> Image {
        try decode(try parseHeader(bytes), file: Array(bytes))
    }

    /// The IJK→RAS matrix from the sform, the qform or pixdim, in that order of preference.
    private static func geometry(_ f: BinaryFields, dims: [Int]) throws -> [Double] {
        let pixdim = (1...3).map { d -> Double in
            let p = abs(f.float32(76 + 4 * d))
            return p == 0 || !p.isFinite ? 1 : p
        }
        if f.int16(254) > 0 {
            let rows = (0..<12).map { f.float32(280 + 4 * $0) }
            guard rows.allSatisfy(\.isFinite) else {
                throw LiversegError.invalidArgument("NIfTI header: srow_x/y/z hold a non-finite value")
            }
            return rows + [0, 0, 0, 1]
        }
        if f.int16(252) > 0 {
            var (b, c, d) = (f.float32(256), f.float32(260), f.float32(264))
            var a = 1 - (b * b + c * c + d * d)
            if a < 1e-7 {
                // Rotation by 180°: renormalise (b, c, d), a = 0 (nifti1_io's rule).
                let n = (b * b + c * c + d * d).squareRoot()
                guard n > 0 else { throw LiversegError.invalidArgument("NIfTI header: quatern_b/c/d are all zero") }
                (a, b, c, d) = (0, b / n, c / n, d / n)
            } else {
                a = a.squareRoot()
            }
            let qfac: Double = f.float32(76) < 0 ? -1 : 1
            let r: [Double] = [
                a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c),
                2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b),
                2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b,
            ]
            let scale = [pixdim[0], pixdim[1], pixdim[2] * qfac]
            let offset = [f.float32(268), f.float32(272), f.float32(276)]
            guard offset.allSatisfy(\.isFinite), [a, b, c, d].allSatisfy(\.isFinite) else {
                throw LiversegError.invalidArgument("NIfTI header: quatern/qoffset fields hold a non-finite value")
            }
            var m = [Double](repeating: 0, count: 16)
            for row in 0..<3 {
                for col in 0..<3 { m[row * 4 + col] = r[row * 3 + col] * scale[col] }
                m[row * 4 + 3] = offset[row]
            }
            m[15] = 1
            return m
        }
        // Neither code set: nibabel's base affine (x flipped, origin at the volume's centre).
        let zooms = [-pixdim[0], pixdim[1], pixdim[2]]
        var m = [Double](repeating: 0, count: 16)
        for a in 0..<3 {
            m[a * 5] = zooms[a]
            m[a * 4 + 3] = -Double(dims[a] - 1) / 2 * zooms[a]
        }
        m[15] = 1
        return m
    }

    /// Serialises `image` as a little-endian NIfTI-1 file: the voxels in their own type, the
    /// matrix as sform (code 1, exact to float32) and as the nearest qform (code 1), spacing
    /// in pixdim, units mm, scl_slope/scl_inter from the image. NIfTI-1 stores each extent
    /// as an int16: an image with an extent beyond 32767 is an error. Pure.
    public static func serialize(_ image: Image) throws -> [UInt8] {
        try header(of: image) + image.data
    }

    /// The bytes `serialize` writes before the voxels (header, magic, no extensions).
    static func header(of image: Image) throws -> [UInt8] {
        let extents = [image.size.x, image.size.y, image.size.z]
        if let axis = extents.firstIndex(where: { $0 > Int(Int16.max) }) {
            throw LiversegError.unsupported(
                "NIfTI-1 stores extents up to 32767; the image is \(image.size) (axis \(axis) has \(extents[axis]) voxels): write it as .nrrd or .mha"
            )
        }
        var w = BinaryWriter()
        w.int32(headerSize)
        w.zeros(10 + 18)  // data_type, db_name
        w.int32(0)  // extents
        w.int16(0)  // session_error
        w.zeros(2)  // regular, dim_info
        for d in [3, image.size.x, image.size.y, image.size.z, 1, 1, 1, 1] { w.int16(d) }
        w.zeros(12)  // intent_p1...p3
        w.int16(0)  // intent_code
        w.int16(datatypeCodes.first { $0.1 == image.voxelType }?.0 ?? 0)
        w.int16(image.voxelType.size * 8)
        w.int16(0)  // slice_start
        let (qfac, quaternion) = qform(image.ijkToRAS)
        let spacing = image.spacing
        for p in [qfac, spacing[0], spacing[1], spacing[2], 0, 0, 0, 0] { w.float32(p) }
        w.float32(Double(dataOffset))
        w.float32(image.slope)
        w.float32(image.intercept)
        w.int16(0)  // slice_end
        w.zeros(1)  // slice_code
        w.bytes.append(2 | 8)  // xyzt_units: mm, s
        w.zeros(4 * 4 + 4 * 2)  // cal_max, cal_min, slice_duration, toffset, glmax, glmin
        w.text("liverseg", length: 80)
        w.zeros(24)  // aux_file
        w.int16(1)  // qform_code: scanner
        w.int16(1)  // sform_code: scanner
        for q in quaternion { w.float32(q) }
        for r in 0..<3 { w.float32(image.ijkToRAS[r * 4 + 3]) }
        for v in image.ijkToRAS[0..<12] { w.float32(v) }
        w.zeros(16)  // intent_name
        w.text("n+1", length: 4)
        w.zeros(4)  // no extensions
        return w.bytes
    }

    /// The qform of a matrix: qfac (−1 when its columns form a left-handed frame) and the
    /// quaternion (b, c, d) of its normalised columns — nifti1_io's mat44_to_quatern,
    /// without its polar decomposition (liverseg's writers store the exact matrix as sform).
    private static func qform(_ m: [Double]) -> (qfac: Double, quaternion: [Double]) {
        var r = [Double](repeating: 0, count: 9)
        for c in 0..<3 {
            let col = (0..<3).map { m[$0 * 4 + c] }
            let n = col.map { $0 * $0 }.reduce(0, +).squareRoot()
            for row in 0..<3 { r[row * 3 + c] = n > 0 ? col[row] / n : (row == c ? 1 : 0) }
        }
        let det = r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6]) + r[2] * (r[3] * r[7] - r[4] * r[6])
        let qfac: Double = det < 0 ? -1 : 1
        if det < 0 { for row in 0..<3 { r[row * 3 + 2] = -r[row * 3 + 2] } }
        let (r11, r12, r13, r21, r22, r23, r31, r32, r33) = (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
        var a = r11 + r22 + r33 + 1, b: Double, c: Double, d: Double
        if a > 0.5 {
            a = 0.5 * a.squareRoot()
            (b, c, d) = (0.25 * (r32 - r23) / a, 0.25 * (r13 - r31) / a, 0.25 * (r21 - r12) / a)
        } else {
            let (xd, yd, zd) = (1 + r11 - (r22 + r33), 1 + r22 - (r11 + r33), 1 + r33 - (r11 + r22))
            if xd > 1 {
                b = 0.5 * xd.squareRoot(); c = 0.25 * (r12 + r21) / b; d = 0.25 * (r13 + r31) / b; a = 0.25 * (r32 - r23) / b
            } else if yd > 1 {
                c = 0.5 * yd.squareRoot(); b = 0.25 * (r12 + r21) / c; d = 0.25 * (r23 + r32) / c; a = 0.25 * (r13 - r31) / c
            } else {
                d = 0.5 * zd.squareRoot(); b = 0.25 * (r13 + r31) / d; c = 0.25 * (r23 + r32) / d; a = 0.25 * (r21 - r12) / d
            }
            if a < 0 { (b, c, d) = (-b, -c, -d) }
        }
        return (qfac, [b, c, d])
    }
}
