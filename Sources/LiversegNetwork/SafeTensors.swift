import LiversegSupport

/// The parsed layout of a safetensors file: an 8-byte little-endian header length, a JSON
/// header mapping tensor names to {dtype, shape, data_offsets} (plus an optional
/// `__metadata__` string map), then the raw little-endian tensor bytes.
public struct SafeTensorsFile: Sendable {
    /// One tensor's entry in the header.
    public struct Entry: Sendable, Equatable {
        /// Tensor name.
        public let name: String
        /// Element type as spelled in the file ("F32", ...).
        public let dtype: String
        /// Dimensions, outermost first.
        public let shape: [Int]
        /// Byte range within the whole file.
        public let byteRange: Range<Int>
    }

    /// Tensors in header order.
    public let entries: [Entry]
    /// The `__metadata__` map (empty if absent).
    public let metadata: [String: String]

    /// Element sizes of every dtype the format defines.
    static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
    ]

    /// Largest header accepted (the reference implementation's limit).
    static let maxHeaderBytes = 100_000_000

    /// Parses and checks the layout of a whole file. Pure: bytes in, value or error out.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(LiversegError) -> SafeTensorsFile {
        func fail(_ m: String) -> LiversegError { .invalidModel(m) }
        guard bytes.count >= 8 else { throw fail("file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw fail("header length \(headerLength) runs past the end of the \(bytes.count)-byte file (truncated?)")
        }
        guard headerLength <= UInt64(maxHeaderBytes) else {
            throw fail("header length \(headerLength) exceeds \(maxHeaderBytes) bytes")
        }
        let dataStart = 8 + Int(headerLength)
        let header: JSONValue
        do {
            header = try parseJSON(UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart]))
        } catch {
            throw fail("header is not valid JSON: \(error)")
        }
        guard let members = header.objectValue else { throw fail("header is not a JSON object") }
        let dataSize = bytes.count - dataStart
        var entries: [Entry] = []
        var metadata: [String: String] = [:]
        var names = Set<String>()
        for (name, value) in members {
            guard names.insert(name).inserted else { throw fail("tensor \"\(name)\" appears twice in the header") }
            if name == "__metadata__" {
                guard let map = value.objectValue else { throw fail("__metadata__ is not an object") }
                for (k, v) in map {
                    guard let s = v.stringValue else { throw fail("__metadata__ value \"\(k)\" is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let dtype = value["dtype"]?.stringValue else { throw fail("tensor \"\(name)\" has no dtype string") }
            guard let elementSize = dtypeSizes[dtype] else { throw fail("tensor \"\(name)\" has unknown dtype \"\(dtype)\"") }
            guard let shapeValues = value["shape"]?.arrayValue else { throw fail("tensor \"\(name)\" has no shape array") }
            var shape: [Int] = []
            for d in shapeValues {
                guard let n = d.intValue, n >= 0 else {
                    throw fail("tensor \"\(name)\" has a shape entry that is not a non-negative integer")
                }
                shape.append(n)
            }
            guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
                let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, begin <= end
            else {
                throw fail("tensor \"\(name)\" needs data_offsets [begin, end] with 0 <= begin <= end")
            }
            guard end <= dataSize else {
                throw fail(
                    "tensor \"\(name)\" data_offsets [\(begin), \(end)] run past the \(dataSize) data bytes (truncated file?)")
            }
            var expected = elementSize
            for n in shape {
                let (p, overflow) = expected.multipliedReportingOverflow(by: n)
                guard !overflow else { throw fail("tensor \"\(name)\" shape \(shape) overflows") }
                expected = p
            }
            guard end - begin == expected else {
                throw fail("tensor \"\(name)\" holds \(end - begin) bytes but dtype \(dtype) × shape \(shape) needs \(expected)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end)))
        }
        let sorted = entries.filter { !$0.byteRange.isEmpty }.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.byteRange.upperBound > b.byteRange.lowerBound {
            throw fail("tensors \"\(a.name)\" and \"\(b.name)\" overlap in the data section")
        }
        return SafeTensorsFile(entries: entries, metadata: metadata)
    }

    /// The entry named `name`, if any.
    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

    /// Reads a float32 tensor's values (little-endian) from the file's bytes.
    public static func float32Values(_ entry: Entry, in bytes: UnsafeRawBufferPointer) -> [Float] {
        let count = entry.byteRange.count / 4
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            for i in 0..<count {
                let o = entry.byteRange.lowerBound + 4 * i
                let bits = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
                out[i] = Float(bitPattern: bits)
            }
            initialized = count
        }
    }
}

/// Encodes float32 tensors and a string map as a safetensors file (the inverse of
/// `SafeTensorsFile.parse`): header padded with spaces to 8-byte alignment, data in order.
package func safeTensorsBytes(
    _ tensors: [(name: String, shape: [Int], values: [Float])],
    metadata: [String: String]
) -> [UInt8] {
    var members: [(String, JSONValue)] = [
        (
            "__metadata__",
            .object(
                metadata.sorted { $0.key < $1.key }
                    .map { ($0.key, .string($0.value)) })
        )
    ]
    var offset = 0
    for t in tensors {
        let end = offset + 4 * t.values.count
        members.append(
            (
                t.name,
                .object([
                    ("dtype", .string("F32")), ("shape", .array(t.shape.map { .number(Double($0)) })),
                    ("data_offsets", .array([.number(Double(offset)), .number(Double(end))])),
                ])
            ))
        offset = end
    }
    var header = Array(JSONValue.object(members).serialized.utf8)
    header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
    var bytes: [UInt8] = []
    bytes.reserveCapacity(8 + header.count + offset)
    for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(i)))) }
    bytes += header
    for t in tensors {
        for v in t.values {
            let bits = v.bitPattern
            bytes += [
                UInt8(truncatingIfNeeded: bits), UInt8(truncatingIfNeeded: bits >> 8),
                UInt8(truncatingIfNeeded: bits >> 16), UInt8(truncatingIfNeeded: bits >> 24),
            ]
        }
    }
    return bytes
}
