import LiversegSupport

/// One line of a text header and where the next line starts.
struct HeaderLine {
    /// The line without its terminator (\n or \r\n).
    let text: String
    /// Byte index just past the terminator.
    let next: Int
}

/// The line starting at `start` in `bytes`, or nil at the end; a line without a terminator
/// runs to the end. Fails on invalid UTF-8 or a NUL byte (binary data, not a header).
func headerLine(_ bytes: ArraySlice<UInt8>, from start: Int, format: String) throws -> HeaderLine? {
    guard start < bytes.endIndex else { return nil }
    let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.endIndex
    var content = bytes[start..<end]
    if content.last == 0x0D { content = content.dropLast() }
    guard !content.contains(0), let text = String(validating: content, as: UTF8.self) else {
        throw LiversegError.invalidArgument(
            "\(format) header: line at byte \(start - bytes.startIndex) is not text (truncated header or missing blank line?)")
    }
    return HeaderLine(text: text, next: min(end + 1, bytes.endIndex))
}

/// `text` without leading and trailing spaces and tabs.
func trimmed(_ text: some StringProtocol) -> String {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else {
        return ""
    }
    return String(text[first...last])
}

/// The whitespace-separated numbers of a header value, or an error naming `field`.
func headerNumbers(_ value: String, field: String, format: String, count: Int? = nil) throws -> [Double] {
    let words = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
    let numbers = words.compactMap { Double($0) }
    guard numbers.count == words.count, numbers.allSatisfy(\.isFinite) else {
        throw LiversegError.invalidArgument("\(format) header: \(field) \"\(value)\" is not a list of finite numbers")
    }
    if let count, numbers.count != count {
        throw LiversegError.invalidArgument("\(format) header: \(field) has \(numbers.count) values, expected \(count)")
    }
    return numbers
}

/// The image extents from a header's sizes (three integers ≥ 1), or an error naming `field`.
func headerSizes(_ value: String, field: String, format: String) throws -> GridSize {
    let words = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
    let sizes = words.compactMap { Int($0) }
    guard sizes.count == 3, words.count == 3, sizes.allSatisfy({ $0 >= 1 }) else {
        throw LiversegError.invalidArgument("\(format) header: \(field) \"\(value)\" must be three integers ≥ 1")
    }
    return GridSize(x: sizes[0], y: sizes[1], z: sizes[2])
}

/// The voxels of a decoded data block that starts at `start` in `bytes`, in little-endian
/// order; fails when the block is too short. Every format ends its decoding here. The voxels
/// are moved to the front of `bytes`' own storage and the rest trimmed, so a caller that
/// hands over its only reference (a file just read, a stream just inflated) gets no copy.
func decodeVoxels(
    _ bytes: consuming [UInt8], from start: Int, type: VoxelType, size: GridSize, bigEndian: Bool,
    format: String
) throws -> [UInt8] {
    let count = try checkedProduct([size.x, size.y, size.z, type.size], what: "\(format) sizes")
    let available = bytes.count - max(start, 0)
    guard start >= 0, available >= count else {
        throw LiversegError.invalidArgument(
            "\(format) data is truncated: \(size) \(type) voxels need \(count) bytes, found \(available)")
    }
    var voxels = consume bytes
    voxels.removeSubrange((start + count)...)
    voxels.removeSubrange(..<start)
    if bigEndian { swapByteOrder(&voxels, elementSize: type.size) }
    return voxels
}
