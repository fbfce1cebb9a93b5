/// An 8-bit RGB raster, row by row from the top, 3 bytes per pixel.
public struct RGBImage: Equatable, Sendable {
    /// Pixels per row.
    public let width: Int
    /// Rows.
    public let height: Int
    /// width × height × 3 bytes: R, G, B of each pixel.
    public var pixels: [UInt8]

    /// A black image.
    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
    }

    /// Sets pixel (x, y) to `rgb`; coordinates outside the image are ignored.
    public mutating func set(_ x: Int, _ y: Int, _ rgb: (UInt8, UInt8, UInt8)) {
        guard x >= 0, x < width, y >= 0, y < height else { return }
        let o = (y * width + x) * 3
        (pixels[o], pixels[o + 1], pixels[o + 2]) = rgb
    }

    /// The image as a PNG file (colour type 2, 8 bits, no interlace, deflated with zlib).
    public func pngData() throws -> [UInt8] {
        var w = BinaryWriter(bytes: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], bigEndian: true)
        func chunk(_ type: String, _ body: [UInt8]) {
            let typed = Array(type.utf8) + body
            w.uint32(UInt32(body.count))
            w.raw(typed)
            w.uint32(crc32(typed[...]))
        }
        var header = BinaryWriter(bigEndian: true)
        header.uint32(UInt32(width))
        header.uint32(UInt32(height))
        header.raw([8, 2, 0, 0, 0])
        chunk("IHDR", header.bytes)
        var scanlines = [UInt8]()
        scanlines.reserveCapacity((width * 3 + 1) * height)
        for y in 0..<height {
            scanlines.append(0)  // filter: none
            scanlines.append(contentsOf: pixels[(y * width * 3)..<((y + 1) * width * 3)])
        }
        chunk("IDAT", try deflate(scanlines, container: .zlib))
        chunk("IEND", [])
        return w.bytes
    }
}
