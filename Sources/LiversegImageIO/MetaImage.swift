import LiversegSupport

/// MetaImage (.mha with local data, .mhd + .raw/.zraw): the SLiver07 format, ITK's MetaIO.
/// Geometry is LPS: TransformMatrix lists the axis direction cosines one axis after another.
public enum MetaImage {
    /// A parsed MetaImage header: what `decode` needs to turn the data block into an image.
    public struct Header: Equatable, Sendable {
        /// Element type.
        public let voxelType: VoxelType
        /// Extents along i, j, k.
        public let size: GridSize
        /// IJK→RAS (row-major 4×4) from TransformMatrix, ElementSpacing and Offset.
        public let ijkToRAS: [Double]
        /// Whether the data block is a zlib stream.
        public let compressed: Bool
        /// Byte order of multi-byte elements.
        public let bigEndian: Bool
        /// ElementDataFile (relative to the header's folder), nil for LOCAL.
        public let dataFile: String?
        /// HeaderSize: bytes to skip in the data file; −1: the data are its last bytes.
        public let headerSize: Int
        /// Index in the header's bytes where LOCAL data start.
        public let dataStart: Int
    }

    private static let typeNames: [(String, VoxelType)] = [
        ("MET_UCHAR", .uint8), ("MET_CHAR", .int8), ("MET_USHORT", .uint16), ("MET_SHORT", .int16),
        ("MET_UINT", .uint32), ("MET_INT", .int32), ("MET_ULONG", .uint32), ("MET_LONG", .int32),
        ("MET_ULONG_LONG", .uint64), ("MET_LONG_LONG", .int64), ("MET_FLOAT", .float32), ("MET_DOUBLE", .float64),
    ]

    private static func bad(_ m: String) -> LiversegError { .invalidArgument("MetaImage header: \(m)") }

    /// Parses the "Key = Value" lines up to and including ElementDataFile. Pure.
    public static func parseHeader(_ bytes: ArraySlice<UInt8>) throws -> Header {
        var fields: [String: String] = [:]
        var position = bytes.startIndex
        var dataFileValue: String? = nil
        while dataFileValue == nil, let line = try headerLine(bytes, from: position, format: "MetaImage") {
            position = line.next
            if trimmed(line.text).isEmpty { continue }
            guard let eq = line.text.firstIndex(of: "=") else { throw bad("line \"\(line.text)\" is not \"Key = Value\"") }
            let key = trimmed(line.text[..<eq]).lowercased(), value = trimmed(line.text[line.text.index(after: eq)...])
            fields[key] = value
            if key == "elementdatafile" { dataFileValue = value }
        }
        guard let dataFileValue else { throw bad("ElementDataFile is missing (it must be the last field)") }
        func field(_ names: String...) -> String? { names.lazy.compactMap { fields[$0.lowercased()] }.first }
        func boolean(_ names: String...) throws -> Bool {
            guard let v = names.lazy.compactMap({ fields[$0.lowercased()] }).first else { return false }
            switch v.lowercased() {
            case "true", "1": return true
            case "false", "0": return false
            default: throw bad("\(names[0]) \"\(v)\" must be True or False")
            }
        }
        if let objectType = field("ObjectType"), objectType.lowercased() != "image" {
            throw LiversegError.unsupported("MetaImage header: ObjectType \(objectType)")
        }
        guard let ndims = field("NDims") else { throw bad("NDims is missing") }
        guard ndims == "3" else { throw LiversegError.unsupported("MetaImage header: NDims \(ndims); liverseg reads 3D images") }
        guard let dimSize = field("DimSize") else { throw bad("DimSize is missing") }
        let size = try headerSizes(dimSize, field: "DimSize", format: "MetaImage")
        guard let typeName = field("ElementType") else { throw bad("ElementType is missing") }
        guard let type = typeNames.first(where: { $0.0 == typeName.uppercased() })?.1 else {
            throw LiversegError.unsupported("MetaImage header: ElementType \(typeName)")
        }
        if let channels = field("ElementNumberOfChannels"), channels != "1" {
            throw LiversegError.unsupported("MetaImage header: ElementNumberOfChannels \(channels); liverseg reads scalar images")
        }
        if field("BinaryData").map({ $0.lowercased() == "false" }) == true {
            throw LiversegError.unsupported("MetaImage header: BinaryData False (ASCII voxel data)")
        }
        let spacing =
            try field("ElementSpacing", "ElementSize").map {
                try headerNumbers($0, field: "ElementSpacing", format: "MetaImage", count: 3)
            } ?? [1, 1, 1]
        guard spacing.allSatisfy({ $0 != 0 }) else { throw bad("ElementSpacing \(spacing) must be non-zero") }
        let origin =
            try field("Offset", "Position", "Origin").map {
                try headerNumbers($0, field: "Offset", format: "MetaImage", count: 3)
            } ?? [0, 0, 0]
        let direction =
            try field("TransformMatrix", "Rotation", "Orientation").map {
                try headerNumbers($0, field: "TransformMatrix", format: "MetaImage", count: 9)
            } ?? [1, 0, 0, 0, 1, 0, 0, 0, 1]
        let columns = (0..<3).map { axis in (0..<3).map { direction[axis * 3 + $0] * spacing[axis] } }
        var headerSize = 0
        if let text = field("HeaderSize") {
            guard let n = Int(text), n >= -1 else { throw bad("HeaderSize \"\(text)\" must be an integer ≥ -1") }
            headerSize = n
        }
        let local = dataFileValue.uppercased() == "LOCAL"
        if !local, dataFileValue.uppercased() == "LIST" || dataFileValue.contains(" ") {
            throw LiversegError.unsupported(
                "MetaImage header: ElementDataFile \"\(dataFileValue)\" (lists and patterns of files)")
        }
        return Header(
            voxelType: type, size: size, ijkToRAS: ijkToRAS(columns: columns, origin: origin, flip: lpsFlip),
            compressed: try boolean("CompressedData"),
            bigEndian: try boolean("BinaryDataByteOrderMSB", "ElementByteOrderMSB"),
            dataFile: local ? nil : dataFileValue, headerSize: headerSize, dataStart: position)
    }

    /// Decodes the data block for `header` from `data`: the header file (LOCAL data from
    /// `header.dataStart`) or the whole data file (from 0). Raw voxels are moved into place
    /// within `data`'s storage (see `decodeVoxels`). Pure.
    public static func decode(_ header: Header, data: consuming [UInt8], from start: Int) throws -> Image {
        let bytes = try checkedProduct(
            [header.size.x, header.size.y, header.size.z, header.voxelType.size], what: "MetaImage DimSize")
        var block = consume data
        var begin = start
        if header.headerSize == -1 {
            guard !header.compressed else { throw bad("HeaderSize -1 cannot be used with CompressedData") }
            guard block.count - begin >= bytes else {
                throw bad("data is truncated: \(bytes) bytes needed, \(block.count - begin) found")
            }
            begin = block.count - bytes
        } else {
            guard header.headerSize <= block.count - begin else {
                throw bad("HeaderSize \(header.headerSize) passes the end of the data")
            }
            begin += header.headerSize
        }
        if header.compressed {
            block = try inflate(block[begin...], expected: bytes, what: "MetaImage compressed data")
            begin = 0
        }
        let voxels = try decodeVoxels(
            consume block, from: begin, type: header.voxelType, size: header.size, bigEndian: header.bigEndian,
            format: "MetaImage")
        return try Image(voxelType: header.voxelType, data: voxels, size: header.size, ijkToRAS: header.ijkToRAS)
    }

    /// Parses an .mha file with LOCAL data. Pure.
    public static func parse(_ bytes: ArraySlice<UInt8>) throws -> Image {
        let header = try parseHeader(bytes)
        if let file = header.dataFile {
            throw LiversegError.invalidArgument(
                "MetaImage header: data are in the file \"\(file)\"; read the header from its file path")
        }
        return try decode(header, data: Array(bytes), from: header.dataStart)
    }

    /// Serialises `image` (scaling applied) as ITK writes it: with `dataFile` nil, one .mha
    /// file with LOCAL data (`data` empty); otherwise a header naming `dataFile` and the
    /// data block to store there. Pure apart from allocation.
    public static func serialize(
        _ image: Image, compressed: Bool, dataFile: String? = nil
    ) throws -> (header: [UInt8], data: [UInt8]) {
        let image = try image.applyingScaling()
        let spacing = image.spacing
        let (columns, origin) = axisVectorsAndOrigin(image.ijkToRAS, flip: lpsFlip)
        let direction = (0..<3).flatMap { axis in columns[axis].map { $0 / spacing[axis] } }
        let data = compressed ? try deflate(image.data, container: .zlib) : image.data
        var lines = [
            "ObjectType = Image",
            "NDims = 3",
            "BinaryData = True",
            "BinaryDataByteOrderMSB = False",
            "CompressedData = \(compressed ? "True" : "False")",
        ]
        if compressed { lines.append("CompressedDataSize = \(data.count)") }
        lines += [
            "TransformMatrix = " + direction.map(headerNumber).joined(separator: " "),
            "Offset = " + origin.map(headerNumber).joined(separator: " "),
            "ElementSpacing = " + spacing.map(headerNumber).joined(separator: " "),
            "DimSize = \(image.size.x) \(image.size.y) \(image.size.z)",
            "ElementType = " + (typeNames.first { $0.1 == image.voxelType }?.0 ?? ""),
            "ElementDataFile = \(dataFile ?? "LOCAL")",
        ]
        let header = Array((lines.joined(separator: "\n") + "\n").utf8)
        return dataFile == nil ? (header + data, []) : (header, data)
    }
}
