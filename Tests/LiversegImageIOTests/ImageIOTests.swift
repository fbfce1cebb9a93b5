import Foundation
import XCTest
@testable import LiversegImageIO
@testable import LiversegSupport

/// A small image of `type` with values covering the type's range and an LPS-like, shifted
/// geometry (negative x and y columns, as the IRCADb files).
func sampleImage(
    _ type: VoxelType, size: GridSize = GridSize(x: 5, y: 4, z: 3),
    matrix: [Double] = [-0.75, 0, 0, 12.5, 0, -0.75, 0, -40.25, 0, 0, 2.5, 100, 0, 0, 0, 1]
) throws -> Image {
    let n = size.voxelCount
    let bytes: [UInt8]
    switch type {
    case .uint8: bytes = (0..<n).map { UInt8($0 * 37 % 256) }.withUnsafeBytes { Array($0) }
    case .int8: bytes = (0..<n).map { Int8(truncatingIfNeeded: $0 * 37 - 100) }.withUnsafeBytes { Array($0) }
    case .uint16: bytes = (0..<n).map { UInt16($0 * 3001 % 65536) }.withUnsafeBytes { Array($0) }
    case .int16: bytes = (0..<n).map { Int16(truncatingIfNeeded: $0 * 97 - 1024) }.withUnsafeBytes { Array($0) }
    case .uint32: bytes = (0..<n).map { UInt32($0) &* 2_654_435_761 }.withUnsafeBytes { Array($0) }
    case .int32: bytes = (0..<n).map { Int32(truncatingIfNeeded: $0 * 1_000_003 - 7) }.withUnsafeBytes { Array($0) }
    case .uint64: bytes = (0..<n).map { UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }.withUnsafeBytes { Array($0) }
    case .int64: bytes = (0..<n).map { Int64($0) &* -0x1234_5678_9ABC }.withUnsafeBytes { Array($0) }
    case .float32: bytes = (0..<n).map { Float($0) * 0.1 - 1.5 }.withUnsafeBytes { Array($0) }
    case .float64: bytes = (0..<n).map { Double($0) / 3 - 1e-3 }.withUnsafeBytes { Array($0) }
    }
    return try Image(voxelType: type, data: bytes, size: size, ijkToRAS: matrix)
}

/// A fresh empty folder under the system temporary folder.
func temporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "liverseg-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

final class ImageIOTests: XCTestCase {
    /// Reading keeps one voxel buffer: a file handed over whole (as `readImage` does) is
    /// decoded in its own storage, for NIfTI, NRRD and MetaImage with attached raw data.
    func testDecodingReusesTheFileStorageInsteadOfCopying() throws {
        let image = try sampleImage(.int16, size: GridSize(x: 64, y: 32, z: 8))
        let files: [(ImageFormat, [UInt8])] = [
            (.nifti, try NIfTI.serialize(image)),
            (.nrrd, try NRRD.serialize(image, encoding: .raw).header),
            (.metaImage, try MetaImage.serialize(image, compressed: false).header),
        ]
        for (format, bytes) in files {
            var file = bytes
            file.reserveCapacity(file.count)  // gives `file` a buffer of its own, referenced once
            let address = file.withUnsafeBufferPointer { $0.baseAddress }
            let decoded = try decodeImage(consume file, format: format) { _ in [] }
            XCTAssertEqual(decoded.values(as: Int16.self), image.values(as: Int16.self), "\(format)")
            XCTAssertEqual(decoded.data.withUnsafeBufferPointer { $0.baseAddress }, address, "\(format) copied its voxels")
        }
    }

    func testInMemoryRoundTripsOfEveryFormatAndType() throws {
        for type in VoxelType.allCases {
            let image = try sampleImage(type)
            XCTAssertEqual(try NIfTI.parse(NIfTI.serialize(image)[...]), image, "NIfTI \(type)")
            for encoding in [NRRD.Encoding.raw, .gzip] {
                XCTAssertEqual(
                    try NRRD.parse(NRRD.serialize(image, encoding: encoding).header[...]), image, "NRRD \(encoding) \(type)")
            }
            for compressed in [false, true] {
                XCTAssertEqual(
                    try MetaImage.parse(MetaImage.serialize(image, compressed: compressed).header[...]), image,
                    "MetaImage compressed=\(compressed) \(type)")
            }
        }
    }

    func testFileRoundTripsIncludingDetachedData() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for type in [VoxelType.uint8, .int16, .float64] {
            let image = try sampleImage(type)
            for ext in ["nii", "nii.gz", "nrrd", "nhdr", "mha", "mhd"] {
                let path = "\(folder)/image-\(type).\(ext)"
                try writeImage(image, to: path)
                XCTAssertEqual(try readImage(path), image, "\(ext) \(type)")
            }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(folder)/image-uint8.raw.gz"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(folder)/image-uint8.raw"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    func testObliqueGeometryRoundTrips() throws {
        // A rotation about z by 30° with anisotropic spacing; float32-exact entries.
        let (c, s) = (Double(Float(0.8660254)), Double(Float(0.5)))
        let m = [c * 0.5, -s * 0.75, 0, Double(Float(-10.3)), s * 0.5, c * 0.75, 0, 7, 0, 0, 3, Double(Float(1.1)), 0, 0, 0, 1]
        let image = try sampleImage(.int16, matrix: m.map { Double(Float($0)) })
        XCTAssertEqual(try NIfTI.parse(NIfTI.serialize(image)[...]), image)
        XCTAssertEqual(try NRRD.parse(NRRD.serialize(image, encoding: .raw).header[...]), image)
        let mha = try MetaImage.parse(MetaImage.serialize(image, compressed: false).header[...])
        for (x, y) in zip(mha.ijkToRAS, image.ijkToRAS) { XCTAssertEqual(x, y, accuracy: 1e-12) }
    }

    func testNIfTIQformIsUsedWhenSformCodeIsZero() throws {
        let image = try sampleImage(.uint8)
        var bytes = try NIfTI.serialize(image)
        bytes[254] = 0  // sform_code = 0
        let q = try NIfTI.parse(bytes[...])
        for (x, y) in zip(q.ijkToRAS, image.ijkToRAS) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        bytes[252] = 0  // qform_code = 0 too: nibabel's fallback, centred, x flipped
        let fallback = try NIfTI.parse(bytes[...])
        XCTAssertEqual(fallback.ijkToRAS, [-0.75, 0, 0, 1.5, 0, 0.75, 0, -1.125, 0, 0, 2.5, -2.5, 0, 0, 0, 1])
    }

    func testNIfTIScalingAndBigEndianNRRDAndMetaImage() throws {
        var bytes = try NIfTI.serialize(try sampleImage(.int16))
        bytes.replaceSubrange(112..<120, with: [Float(2), Float(-1024)].withUnsafeBytes { Array($0) })
        let scaled = try NIfTI.parse(bytes[...])
        XCTAssertEqual(scaled.slope, 2)
        XCTAssertEqual(scaled.intercept, -1024)
        XCTAssertEqual(scaled.floatIntensities()[1], Float(97 - 1024) * 2 - 1024)
        let nrrd = "NRRD0005\ntype: short\ndimension: 3\nsizes: 2 1 1\nendian: big\nencoding: raw\nspacings: 2 3 4\n\n"
        let big = try NRRD.parse((Array(nrrd.utf8) + [0x01, 0x02, 0xFF, 0xFE])[...])
        XCTAssertEqual(big.values(as: Int16.self), [0x0102, -2])
        XCTAssertEqual(big.ijkToRAS, [-2, 0, 0, 0, 0, -3, 0, 0, 0, 0, 4, 0, 0, 0, 0, 1])
        let mha = "NDims = 3\nDimSize = 2 1 1\nElementType = MET_USHORT\nBinaryDataByteOrderMSB = True\nElementDataFile = LOCAL\n"
        XCTAssertEqual(
            try MetaImage.parse((Array(mha.utf8) + [0x01, 0x02, 0xFF, 0xFE])[...]).values(as: UInt16.self), [0x0102, 0xFFFE])
    }

    func testSlicerStyleNRRDHeaderWithCommentsAndKeyValues() throws {
        let text = """
            NRRD0004
            # Complete NRRD file format specification at:
            type: unsigned char
            dimension: 3
            space: right-anterior-superior
            sizes: 1 1 2
            space directions: (0.5, 0, 0) (0,0.5,0) (0,0,3)
            kinds: domain domain domain
            encoding: raw
            space origin: (1,2,3)
            Segment0_Name:=liver

            """
        let image = try NRRD.parse((Array((text + "\n").utf8) + [7, 9])[...])
        XCTAssertEqual(image.ijkToRAS, [0.5, 0, 0, 1, 0, 0.5, 0, 2, 0, 0, 3, 3, 0, 0, 0, 1])
        XCTAssertEqual(image.values(as: UInt8.self), [7, 9])
    }

    func testMalformedHeadersFailNamingTheField() throws {
        let nifti = try NIfTI.serialize(try sampleImage(.int16))
        func niftiError(_ edit: (inout [UInt8]) -> Void) -> String {
            var b = nifti
            edit(&b)
            do { _ = try NIfTI.parse(b[...]); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertTrue(niftiError { $0.removeSubrange(200...) }.contains("348-byte header"))
        XCTAssertTrue(niftiError { $0[0] = 99 }.contains("sizeof_hdr"))
        XCTAssertTrue(niftiError { $0[40] = 9 }.contains("dim[0]"))
        XCTAssertTrue(niftiError { $0[46] = 0 }.contains("dim[3]"))
        XCTAssertTrue(
            niftiError {
                $0[40] = 4; $0[48] = 2
            }.contains("dim[4]"))
        XCTAssertTrue(niftiError { $0[70] = 128 }.contains("datatype 128"))
        XCTAssertTrue(niftiError { $0[344] = UInt8(ascii: "x") }.contains("magic"))
        XCTAssertTrue(niftiError { $0.removeLast(3) }.contains("truncated"))

        func errorText(_ body: () throws -> Image) -> String {
            do { _ = try body(); return "accepted" } catch { return "\(error)" }
        }
        let nrrd = "NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nendian: little\nencoding: raw\n\n"
        XCTAssertTrue(
            errorText { try NRRD.parse(Array(nrrd.replacingOccurrences(of: "sizes: 2 2 2\n", with: "").utf8)[...]) }.contains(
                "sizes"))
        XCTAssertTrue(
            errorText { try NRRD.parse(Array(nrrd.replacingOccurrences(of: "short", with: "quaternion").utf8)[...]) }.contains(
                "type"))
        XCTAssertTrue(
            errorText { try NRRD.parse(Array(nrrd.replacingOccurrences(of: "raw", with: "bzip2").utf8)[...]) }.contains(
                "encoding"))
        XCTAssertTrue(
            errorText { try NRRD.parse(Array(nrrd.replacingOccurrences(of: "2 2 2", with: "2 0 2").utf8)[...]) }.contains("sizes")
        )
        XCTAssertTrue(errorText { try NRRD.parse(Array(nrrd.utf8)[...]) }.contains("truncated"))
        XCTAssertTrue(errorText { try NRRD.parse(Array("P5\n".utf8)[...]) }.contains("magic"))
        let gz = nrrd.replacingOccurrences(of: "raw", with: "gzip")
        XCTAssertTrue(errorText { try NRRD.parse((Array(gz.utf8) + [0x1F, 0x8B, 8, 0, 0])[...]) }.contains("compressed"))

        let mha = "NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
        XCTAssertTrue(
            errorText {
                try MetaImage.parse(Array(mha.replacingOccurrences(of: "ElementDataFile = LOCAL\n", with: "").utf8)[...])
            }.contains("ElementDataFile"))
        XCTAssertTrue(
            errorText { try MetaImage.parse(Array(mha.replacingOccurrences(of: "2 2 2", with: "2 x 2").utf8)[...]) }.contains(
                "DimSize"))
        XCTAssertTrue(
            errorText { try MetaImage.parse(Array(mha.replacingOccurrences(of: "MET_SHORT", with: "MET_FLOAT_ARRAY").utf8)[...]) }
                .contains("ElementType"))
        XCTAssertTrue(errorText { try MetaImage.parse(Array(mha.utf8)[...]) }.contains("truncated"))
    }

    func testFailedWritesLeaveNothingBehindAndUnknownExtensionsFail() throws {
        let image = try sampleImage(.uint8)
        XCTAssertThrowsError(try writeImage(image, to: "/nonexistent-folder/x.nii")) { error in
            guard case LiversegError.io = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try writeImage(image, to: "/tmp/x.png"))
        XCTAssertThrowsError(try readImage("/nonexistent-folder/x.nii.gz"))
    }

    func testInflateRejectsCorruptAndTruncatedStreams() throws {
        let packed = try deflate(Array(repeating: 7, count: 10_000), container: .gzip)
        XCTAssertEqual(try inflate(packed[...], what: "x"), Array(repeating: 7, count: 10_000))
        XCTAssertEqual(try inflate((packed + packed)[...], what: "x").count, 20_000)
        XCTAssertThrowsError(try inflate(packed.dropLast(10), what: "x"))
        var corrupt = packed
        corrupt[12] ^= 0xFF
        XCTAssertThrowsError(try inflate(corrupt[...], what: "x"))
    }

    /// Parts deflated as one stream inflate to their concatenation, with empty parts, and
    /// with incompressible data that makes the output grow past its first allocation.
    func testDeflatingPartsEqualsDeflatingTheirConcatenation() throws {
        var rng = SeededGenerator(seed: 5)
        let noise = (0..<300_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let zeros = [UInt8](repeating: 0, count: 200_000)
        for parts in [[noise[...]], [zeros[..<352], noise[...], zeros[...]], [[], zeros[...], []], [], [noise[..<1]]] {
            let joined = parts.flatMap { Array($0) }
            for container in [DeflateContainer.gzip, .zlib] {
                let packed = try deflate(parts, container: container)
                XCTAssertEqual(try inflate(packed[...], what: "x"), joined)
            }
        }
    }
}

final class ImageIOHostileInputTests: XCTestCase {
    func testHugeDeclaredSizesFailWithoutAllocating() throws {
        let gz = try deflate([1, 2, 3, 4], container: .gzip)
        let nrrd = "NRRD0004\ntype: double\ndimension: 3\nsizes: 100000 100000 100000\nendian: little\nencoding: gzip\n\n"
        XCTAssertThrowsError(try NRRD.parse((Array(nrrd.utf8) + gz)[...])) { error in
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        let mha =
            "NDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_DOUBLE\nCompressedData = True\nElementDataFile = LOCAL\n"
        XCTAssertThrowsError(try MetaImage.parse((Array(mha.utf8) + (try deflate([1, 2], container: .zlib)))[...]))
        var forged = gz
        forged.replaceSubrange((forged.count - 4)..., with: [0xFF, 0xFF, 0xFF, 0xFF])  // ISIZE 4 GiB
        XCTAssertThrowsError(try inflate(forged[...], what: "x"))  // CRC/length check fails, no 4 GiB buffer
        let overflow =
            "NRRD0004\ntype: double\ndimension: 3\nsizes: 4000000000 4000000000 4000000000\nendian: little\nencoding: raw\n\n"
        XCTAssertThrowsError(try NRRD.parse(Array(overflow.utf8)[...]))
    }

    func testRandomlyCorruptedFilesNeverTrap() throws {
        var rng = SeededGenerator(seed: 99)
        let image = try sampleImage(.int16)
        let files: [(String, [UInt8], (ArraySlice<UInt8>) throws -> Image)] = [
            ("NIfTI", try NIfTI.serialize(image), NIfTI.parse),
            (
                "NIfTI.gz", try deflate(NIfTI.serialize(image), container: .gzip),
                { try NIfTI.parse(try inflate($0, what: "gz")[...]) }
            ),
            ("NRRD", try NRRD.serialize(image, encoding: .gzip).header, NRRD.parse),
            ("MetaImage", try MetaImage.serialize(image, compressed: true).header, MetaImage.parse),
        ]
        for (name, bytes, parse) in files {
            for trial in 0..<400 {
                var b = bytes
                for _ in 0..<(1 + trial % 4) {
                    let i = Int.random(in: 0..<b.count, using: &rng)
                    b[i] =
                        trial % 3 == 0
                        ? UInt8.random(in: 0...255, using: &rng) : b[i] ^ (1 << UInt8.random(in: 0...7, using: &rng))
                }
                if trial % 5 == 0 { b.removeLast(Int.random(in: 0..<b.count, using: &rng)) }
                _ = try? parse(b[...])  // any outcome but a trap is fine
            }
            XCTAssertEqual(try parse(bytes[...]), image, name)
        }
    }

    func testDecompressionBeyondTheHeaderSizeIsRefused() throws {
        // 64 MiB of zeros compress to ~64 KiB: a small file the header says holds 2×2×2 bytes.
        let bomb = try deflate([UInt8](repeating: 0, count: 64 << 20), container: .gzip)
        XCTAssertLessThan(bomb.count, 1 << 20)
        XCTAssertThrowsError(try inflate(bomb[...], expected: 8, what: "x")) { error in
            XCTAssertTrue("\(error)".contains("decompresses to more than the 8 bytes its header describes"), "\(error)")
        }
        XCTAssertEqual(try inflate(bomb[...], expected: 100, prefix: true, what: "x"), [UInt8](repeating: 0, count: 100))
        XCTAssertEqual(try inflate(bomb[...], expected: 64 << 20, what: "x").count, 64 << 20)  // exactly: fine
        let nrrd = "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: gzip\n\n"
        XCTAssertThrowsError(try NRRD.parse((Array(nrrd.utf8) + bomb)[...])) { error in
            XCTAssertTrue("\(error)".contains("more than the 8 bytes"), "\(error)")
        }
        let zbomb = try deflate([UInt8](repeating: 0, count: 64 << 20), container: .zlib)
        let mha = "NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nCompressedData = True\nElementDataFile = LOCAL\n"
        XCTAssertThrowsError(try MetaImage.parse((Array(mha.utf8) + zbomb)[...])) { error in
            XCTAssertTrue("\(error)".contains("more than the 8 bytes"), "\(error)")
        }
    }

    func testNIfTIRefusesExtentsBeyondInt16() throws {
        let image = try Image(
            values: [UInt8](repeating: 1, count: 40000), size: GridSize(x: 40000, y: 1, z: 1),
            ijkToRAS: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
        XCTAssertThrowsError(try NIfTI.serialize(image)) { error in
            XCTAssertTrue("\(error)".contains("32767"), "\(error)")
        }
        let folder = try temporaryFolder()
        XCTAssertThrowsError(try writeImage(image, to: folder + "/wide.nii.gz"))
        try writeImage(image, to: folder + "/wide.nrrd")  // NRRD has no such limit
        XCTAssertEqual(try readImage(folder + "/wide.nrrd"), image)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["wide.nrrd"])
    }
}
