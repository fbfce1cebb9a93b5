/// Reads fixed-layout binary fields from bytes in either byte order (NIfTI headers).
struct BinaryFields {
    let bytes: ArraySlice<UInt8>
    let bigEndian: Bool

    private func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
        let start = bytes.startIndex + offset
        var value: T = 0
        for b in 0..<MemoryLayout<T>.size {
            let byte = T(truncatingIfNeeded: bytes[start + (bigEndian ? b : MemoryLayout<T>.size - 1 - b)])
            value = value << 8 | byte
        }
        return value
    }

    /// The 16-bit signed integer at `offset`.
    func int16(_ offset: Int) -> Int { Int(Int16(bitPattern: load(offset, UInt16.self))) }
    /// The 32-bit signed integer at `offset`.
    func int32(_ offset: Int) -> Int { Int(Int32(bitPattern: load(offset, UInt32.self))) }
    /// The 32-bit float at `offset`, as a Double.
    func float32(_ offset: Int) -> Double { Double(Float(bitPattern: load(offset, UInt32.self))) }
    /// The byte at `offset`.
    func uint8(_ offset: Int) -> UInt8 { bytes[bytes.startIndex + offset] }
}

/// Appends fixed-layout little-endian binary fields (NIfTI headers, PNG chunks use big-endian
/// through `bigEndian`).
struct BinaryWriter {
    /// The bytes written so far.
    var bytes: [UInt8] = []
    /// Byte order of multi-byte fields.
    var bigEndian = false

    private mutating func store<T: FixedWidthInteger>(_ value: T) {
        for b in 0..<MemoryLayout<T>.size {
            let shift = 8 * (bigEndian ? MemoryLayout<T>.size - 1 - b : b)
            bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    mutating func int16(_ v: Int) { store(Int16(truncatingIfNeeded: v)) }
    mutating func int32(_ v: Int) { store(Int32(truncatingIfNeeded: v)) }
    mutating func uint32(_ v: UInt32) { store(v) }
    mutating func float32(_ v: Double) { store(Float(v).bitPattern) }
    mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
    /// `text`'s UTF-8 bytes, NUL-padded or cut to `length`.
    mutating func text(_ text: String, length: Int) {
        let utf8 = Array(text.utf8.prefix(length))
        bytes.append(contentsOf: utf8 + [UInt8](repeating: 0, count: length - utf8.count))
    }
    mutating func zeros(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }
}

/// Reverses the byte order of every `elementSize`-byte element of `data` in place.
func swapByteOrder(_ data: inout [UInt8], elementSize: Int) {
    guard elementSize > 1 else { return }
    data.withUnsafeMutableBytes { raw in
        var start = 0
        while start + elementSize <= raw.count {
            var (lo, hi) = (start, start + elementSize - 1)
            while lo < hi { raw.swapAt(lo, hi); lo += 1; hi -= 1 }
            start += elementSize
        }
    }
}

/// Formats a double for a text header: shortest text that reads back to the same value.
func headerNumber(_ v: Double) -> String {
    v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)"
}
