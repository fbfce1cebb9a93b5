import XCTest
import LiversegTestSupport
@testable import LiversegPipeline
@testable import LiversegSupport
@testable import LiversegImageIO

final class PreviewTests: XCTestCase {
    func testPNGHasValidChunksAndPixels() throws {
        var picture = RGBImage(width: 3, height: 2)
        picture.set(1, 1, (10, 20, 30))
        picture.set(5, 5, (1, 1, 1))  // outside: ignored
        let png = try picture.pngData()
        XCTAssertEqual(Array(png[0..<8]), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        // IHDR: length 13, width 3, height 2, depth 8, colour type 2.
        XCTAssertEqual(Array(png[8..<16]), [0, 0, 0, 13] + Array("IHDR".utf8))
        XCTAssertEqual(Array(png[16..<26]), [0, 0, 0, 3, 0, 0, 0, 2, 8, 2])
        XCTAssertEqual(
            crc32(png[12..<29]), UInt32(png[29]) << 24 | UInt32(png[30]) << 16 | UInt32(png[31]) << 8 | UInt32(png[32]))
        let idatLength = Int(png[33]) << 24 | Int(png[34]) << 16 | Int(png[35]) << 8 | Int(png[36])
        let scanlines = try inflate(png[41..<(41 + idatLength)], what: "IDAT")
        XCTAssertEqual(scanlines, [0] + [UInt8](repeating: 0, count: 9) + [0, 0, 0, 0, 10, 20, 30, 0, 0, 0])
        XCTAssertEqual(Array(png.suffix(12)), [0, 0, 0, 0] + Array("IEND".utf8) + [0xAE, 0x42, 0x60, 0x82])
    }

    func testPreviewOutlinesTheMaskInRadiologicalOrientation() throws {
        // An RAS volume whose mask is a block at low i, on the patient's left: the
        // radiological convention draws it on the right half of the axial panel.
        let size = GridSize(x: 20, y: 20, z: 10)
        let ct = try Image(
            values: [Int16](repeating: 40, count: size.voxelCount), size: size,
            ijkToRAS: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1])
        let mask = boxMask(size, [2, 5, 2], [8, 15, 8])
        var preview = Preview()
        preview.panelSize = 40
        let picture = try preview.render(ct, mask: mask)
        XCTAssertEqual([picture.width, picture.height], [120, 40])
        var red: [Int] = []
        for y in 0..<40 {
            for x in 0..<40 where picture.pixels[(y * 120 + x) * 3] == 255 { red.append(x) }
        }
        XCTAssertFalse(red.isEmpty)
        XCTAssertTrue(red.allSatisfy { $0 >= 24 }, "mask drawn on the wrong side: \(Set(red).sorted())")
        XCTAssertThrowsError(try preview.render(ct, mask: [1, 2, 3]))
    }
}
