import LiversegSupport

/// NRRD (.nrrd with attached data, .nhdr with a detached data file), as 3D Slicer writes it.
public enum NRRD {
    /// How the data block is encoded.
    public enum Encoding: String, Sendable {
        /// Uncompressed bytes, and gzip-compressed bytes.
        case raw, gzip
    }

    /// A parsed NRRD header: what `decode` needs to turn the data block into an image.
    public struct Header: Equatable, Sendable {
        /// Element type.
        public let voxelType: VoxelType
        /// Extents along i, j, k.
        public let size: GridSize
        /// IJK→RAS (row-major 4×4) from space, space directions and space origin.
        public let ijkToRAS: [Double]
        /// Data block encoding.
        public let encoding: Encoding
        /// Byte order of multi-byte elements in the (decoded) data.
        public let bigEndian: Bool
        /// The "data file" field (relative to the header's folder), nil when attached.
        public let dataFile: String?
        /// Lines to skip at the start of the data file before anything else.
        public let lineSkip: Int
        /// Bytes to skip after the line skip (after decompressing, for gzip); −1: the data
        /// are the last bytes of the file (raw only).
        public let byteSkip: Int
        /// Index in the header's bytes where attached data start.
        public let dataStart: Int
    }

    private static let typeNames: [(VoxelType, [String])] = [
        (.uint8, ["uchar", "unsigned char", "uint8", "uint8_t"]),
        (.int8, ["signed char", "int8", "int8_t"]),
        (.uint16, ["ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"]),
        (.int16, ["short", "short int", "signed short", "signed short int", "int16", "int16_t"]),
        (.uint32, ["uint", "unsigned int", "uint32", "uint32_t"]),
        (.int32, ["int", "signed int", "int32", "int32_t"]),
        (.uint64, ["ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"]),
        (.int64, ["longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"]),
        (.float32, ["float"]),
        (.float64, ["double"]),
    ]

    /// Space names and their axis signs relative to RAS.
    private static let spaces: [(names: [String], flip: [Double])] = [
        (["right-anterior-superior", "ras"], [1, 1, 1]),
        (["left-anterior-superior", "las"], [-1, 1, 1]),
        (["left-posterior-superior", "lps"], [-1, -1, 1]),
    ]

    private static func bad(_ m: String) -> LiversegError { .invalidArgument("NRRD header: \(m)") }

    /// Parses a NRRD header (the text up to the blank line, or the whole of an .nhdr file).
    /// Pure.
    public static func parseHeader(_ bytes: ArraySlice<UInt8>) throws -> Header {
        guard let first = try headerLine(bytes, from: bytes.startIndex, format: "NRRD"),
            first.text.hasPrefix("NRRD000"), first.text.count == 8
        else {
            throw bad("the file does not start with the magic NRRD000x")
        }
        var fields: [String: String] = [:]
        var position = first.next
        while let line = try headerLine(bytes, from: position, format: "NRRD") {
            position = line.next
            if line.text.isEmpty { break }
            if line.text.hasPrefix("#") { continue }
            if line.text.contains(":=") { continue }  // key/value pairs: not needed
            let chars = Array(line.text)
            guard let colon = chars.indices.first(where: { chars[$0] == ":" && $0 + 1 < chars.count && chars[$0 + 1] == " " })
            else {
                throw bad("line \"\(line.text)\" is not \"field: value\"")
            }
            fields[String(chars[..<colon]).lowercased()] = trimmed(String(chars[(colon + 2)...]))
        }
        func field(_ name: String) throws -> String {
            guard let v = fields[name] else { throw bad("required field \"\(name)\" is missing") }
            return v
        }
        let typeName = try field("type")
        guard let type = typeNames.first(where: { $0.1.contains(typeName.lowercased()) })?.0 else {
            throw LiversegError.unsupported("NRRD header: type \"\(typeName)\"")
        }
        let dimension = try field("dimension")
        guard dimension == "3" else {
            throw LiversegError.unsupported("NRRD header: dimension \(dimension); liverseg reads 3D images")
        }
        let size = try headerSizes(try field("sizes"), field: "sizes", format: "NRRD")
        let encodingName = try field("encoding").lowercased()
        let encoding: Encoding
        switch encodingName {
        case "raw": encoding = .raw
        case "gzip", "gz": encoding = .gzip
        default: throw LiversegError.unsupported("NRRD header: encoding \"\(encodingName)\" (liverseg reads raw and gzip)")
        }
        var bigEndian = false
        if type.size > 1 {
            switch try field("endian").lowercased() {
            case "little": bigEndian = false
            case "big": bigEndian = true
            case let other: throw bad("endian \"\(other)\" must be little or big")
            }
        }
        func integer(_ name: String, default value: Int, minimum: Int) throws -> Int {
            guard let text = fields[name] else { return value }
            guard let n = Int(text), n >= minimum else { throw bad("\(name) \"\(text)\" must be an integer ≥ \(minimum)") }
            return n
        }
        let lineSkip = try integer("line skip", default: 0, minimum: 0)
        let byteSkip = try integer("byte skip", default: 0, minimum: -1)
        if byteSkip == -1, encoding != .raw { throw bad("byte skip -1 is only allowed with raw encoding") }
        let dataFile = fields["data file"] ?? fields["datafile"]
        if let dataFile, dataFile.contains(" ") || dataFile == "LIST" {
            throw LiversegError.unsupported("NRRD header: data file \"\(dataFile)\" (lists and patterns of data files)")
        }
        return Header(
            voxelType: type, size: size, ijkToRAS: try geometry(fields), encoding: encoding, bigEndian: bigEndian,
            dataFile: dataFile, lineSkip: lineSkip, byteSkip: byteSkip, dataStart: position)
    }

    /// The IJK→RAS matrix from space + space directions + space origin, or, without a space,
    /// from spacings along LPS axes as ITK reads such files.
    private static func geometry(_ fields: [String: String]) throws -> [Double] {
        guard let spaceName = fields["space"] else {
            if fields["space dimension"] != nil {
                throw LiversegError.unsupported("NRRD header: space dimension without an anatomical space")
            }
            var spacing: [Double] = [1, 1, 1]
            if let text = fields["spacings"] {
                let words = text.split(separator: " ")
                guard words.count == 3 else { throw bad("spacings \"\(text)\" needs 3 values") }
                spacing = try words.map { w in
                    if w.lowercased() == "nan" { return 1 }
                    guard let v = Double(w), v.isFinite, v != 0 else {
                        throw bad("spacings \"\(text)\" must be finite, non-zero numbers")
                    }
                    return abs(v)
                }
            }
            return ijkToRAS(
                columns: (0..<3).map { c in (0..<3).map { $0 == c ? spacing[c] : 0 } },
                origin: [0, 0, 0], flip: lpsFlip)
        }
        guard let flip = spaces.first(where: { $0.names.contains(spaceName.lowercased()) })?.flip else {
            throw LiversegError.unsupported("NRRD header: space \"\(spaceName)\" (liverseg reads RAS, LAS and LPS spaces)")
        }
        guard let directionsText = fields["space directions"] else { throw bad("space is set but space directions is missing") }
        let columns = try vectors(directionsText, field: "space directions")
        guard columns.count == 3 else { throw bad("space directions needs 3 vectors, found \(columns.count)") }
        var origin: [Double] = [0, 0, 0]
        if let originText = fields["space origin"] {
            let o = try vectors(originText, field: "space origin")
            guard o.count == 1 else { throw bad("space origin must be one vector") }
            origin = o[0]
        }
        return ijkToRAS(columns: columns, origin: origin, flip: flip)
    }

    /// The "(x,y,z)" vectors of a field; "none" entries are rejected (3D images only).
    private static func vectors(_ text: String, field: String) throws -> [[Double]] {
        var result: [[Double]] = []
        var rest = Substring(text)
        while let open = rest.firstIndex(where: { $0 != " " && $0 != "\t" }) {
            rest = rest[open...]
            if rest.lowercased().hasPrefix("none") {
                throw LiversegError.unsupported("NRRD header: \(field) has a \"none\" axis (non-spatial axes)")
            }
            guard rest.first == "(", let close = rest.firstIndex(of: ")") else {
                throw bad("\(field) \"\(text)\" must be vectors like (x,y,z)")
            }
            let words = rest[rest.index(after: open)..<close].split(separator: ",")
            let v = words.compactMap { Double(trimmed($0)) }
            guard words.count == 3, v.count == 3, v.allSatisfy(\.isFinite) else {
                throw bad("\(field) \"\(text)\" must be vectors of three finite numbers")
            }
            result.append(v)
            rest = rest[rest.index(after: close)...]
        }
        return result
    }

    /// Decodes the data block for `header` from `data`: the header file (attached data from
    /// `header.dataStart`) or the whole detached data file (from 0). Raw voxels are moved
    /// into place within `data`'s storage (see `decodeVoxels`). Pure.
    public static func decode(_ header: Header, data: consuming [UInt8], from start: Int) throws -> Image {
        var block = consume data
        var begin = start
        for _ in 0..<header.lineSkip {
            guard let newline = block[begin...].firstIndex(of: 0x0A) else {
                throw bad("line skip \(header.lineSkip) passes the end of the data")
            }
            begin = newline + 1
        }
        let bytes = try checkedProduct([header.size.x, header.size.y, header.size.z, header.voxelType.size], what: "NRRD sizes")
        if header.encoding == .gzip {
            // byte skip applies to the inflated data (−1 is refused with gzip).
            let (expected, overflow) = bytes.addingReportingOverflow(header.byteSkip)
            block = try inflate(block[begin...], expected: overflow ? nil : expected, what: "NRRD gzip data")
            begin = 0
        }
        if header.byteSkip == -1 {
            guard block.count - begin >= bytes else {
                throw bad("data is truncated: \(bytes) bytes needed, \(block.count - begin) found")
            }
            begin = block.count - bytes
        } else {
            guard header.byteSkip <= block.count - begin else {
                throw bad("byte skip \(header.byteSkip) passes the end of the data")
            }
            begin += header.byteSkip
        }
        let voxels = try decodeVoxels(
            consume block, from: begin, type: header.voxelType, size: header.size, bigEndian: header.bigEndian, format: "NRRD")
        return try Image(voxelType: header.voxelType, data: voxels, size: header.size, ijkToRAS: header.ijkToRAS)
    }

    /// Parses a .nrrd file with attached data. Pure.
    public static func parse(_ bytes: ArraySlice<UInt8>) throws -> Image {
        let header = try parseHeader(bytes)
        if let file = header.dataFile {
            throw LiversegError.invalidArgument(
                "NRRD header: data are in the detached file \"\(file)\"; read the header from its file path")
        }
        return try decode(header, data: Array(bytes), from: header.dataStart)
    }

    /// Serialises `image` (scaling applied) as NRRD in LPS space as 3D Slicer writes it: with
    /// `dataFile` nil, one attached .nrrd file (`data` empty); otherwise a header naming
    /// `dataFile` and the data block to store there. Pure apart from allocation.
    public static func serialize(
        _ image: Image, encoding: Encoding, dataFile: String? = nil
    ) throws -> (header: [UInt8], data: [UInt8]) {
        let image = try image.applyingScaling()
        let typeName = image.voxelType == .float32 ? "float" : image.voxelType == .float64 ? "double" : image.voxelType.rawValue
        let (columns, origin) = axisVectorsAndOrigin(image.ijkToRAS, flip: lpsFlip)
        func vector(_ v: [Double]) -> String { "(" + v.map(headerNumber).joined(separator: ",") + ")" }
        var lines = [
            "NRRD0004",
            "# written by liverseg",
            "type: \(typeName)",
            "dimension: 3",
            "space: left-posterior-superior",
            "sizes: \(image.size.x) \(image.size.y) \(image.size.z)",
            "space directions: " + columns.map(vector).joined(separator: " "),
            "kinds: domain domain domain",
            "endian: little",
            "encoding: \(encoding.rawValue)",
            "space origin: " + vector(origin),
        ]
        if let dataFile { lines.append("data file: \(dataFile)") }
        let header = Array((lines.joined(separator: "\n") + "\n" + (dataFile == nil ? "\n" : "")).utf8)
        let data = encoding == .gzip ? try deflate(image.data, container: .gzip) : image.data
        return dataFile == nil ? (header + data, []) : (header, data)
    }
}
