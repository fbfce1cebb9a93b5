import CZlib
import LiversegSupport

/// The container around a deflate stream.
public enum DeflateContainer: Sendable {
    /// RFC 1950 (MetaImage compressed data, PNG IDAT).
    case zlib
    /// RFC 1952 (.gz files: .nii.gz, NRRD gzip encoding).
    case gzip

    /// zlib's windowBits for this container.
    fileprivate var windowBits: Int32 { self == .zlib ? MAX_WBITS : MAX_WBITS + 16 }
}

/// Whether `bytes` start with the gzip magic number.
package func hasGzipMagic(_ bytes: ArraySlice<UInt8>) -> Bool {
    bytes.count >= 2 && bytes[bytes.startIndex] == 0x1F && bytes[bytes.startIndex + 1] == 0x8B
}

/// Decompresses a zlib or gzip stream (detected from its header; concatenated gzip members
/// are joined, as gunzip does). `expected`: the size the file's header describes; more output
/// is an error (a decompression bomb), and without it, or beyond it, `maximumDataBytes` is
/// the limit. `prefix`: return the first `expected` bytes (fewer if the stream is shorter)
/// and stop there, e.g. to read a header. `what` names the data in errors. Pure.
package func inflate(_ input: ArraySlice<UInt8>, expected: Int? = nil, prefix: Bool = false, what: String) throws -> [UInt8] {
    let limit = min(max(expected ?? maximumDataBytes, 0), maximumDataBytes)
    var hint = expected ?? 0
    if expected == nil, hasGzipMagic(input), input.count >= 18 {
        hint = input.suffix(4).reversed().reduce(0) { $0 << 8 | Int($1) }  // ISIZE, mod 2^32
    }
    // Deflate expands at most ~1032:1, so a forged header or trailer cannot make us
    // allocate more than the data could hold. One byte beyond the limit shows an excess.
    hint = min(max(hint, 0), input.count * 1032 + 1024)
    var output = [UInt8](repeating: 0, count: min(max(hint, min(input.count * 3, limit), 1024), limit) + 1)
    var produced = 0
    var stream = z_stream()
    // 15 + 32: accept both zlib and gzip headers.
    guard inflateInit2_(&stream, MAX_WBITS + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw LiversegError.outOfMemory("zlib could not start inflating \(what)")
    }
    defer { inflateEnd(&stream) }
    try input.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
        guard let base = src.baseAddress else { throw LiversegError.invalidArgument("\(what): compressed data is empty") }
        var consumed = 0
        while true {
            if produced > limit {
                if prefix { return }
                if let expected, expected <= maximumDataBytes {
                    throw LiversegError.invalidArgument(
                        "\(what) decompresses to more than the \(expected) bytes its header describes")
                }
                throw LiversegError.invalidArgument(
                    "\(what) decompresses to more than \(maximumDataBytes) bytes, the most liverseg reads")
            }
            if produced == output.count {
                output.append(contentsOf: repeatElement(0, count: min(output.count, limit + 1 - output.count)))
            }
            let chunkIn = min(src.count - consumed, Int(UInt32.max))
            let chunkOut = min(output.count - produced, Int(UInt32.max))
            stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self) + consumed)
            stream.avail_in = uInt(chunkIn)
            let status: Int32 = output.withUnsafeMutableBytes { dst in
                stream.next_out = dst.baseAddress!.assumingMemoryBound(to: Bytef.self) + produced
                stream.avail_out = uInt(chunkOut)
                return CZlib.inflate(&stream, Z_NO_FLUSH)
            }
            consumed += chunkIn - Int(stream.avail_in)
            produced += chunkOut - Int(stream.avail_out)
            switch status {
            case Z_STREAM_END:
                // Another gzip member follows (pigz, concatenated .gz files): keep going.
                if consumed < src.count, hasGzipMagic(input.dropFirst(consumed)) {
                    inflateReset(&stream)
                    continue
                }
                return
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                if stream.avail_out == 0 { continue }
                if prefix, produced >= limit { return }
                throw LiversegError.invalidArgument("\(what): compressed data is truncated")
            case Z_MEM_ERROR:
                throw LiversegError.outOfMemory("zlib ran out of memory inflating \(what)")
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                throw LiversegError.invalidArgument("\(what): corrupt compressed data (\(reason))")
            }
        }
    }
    output.removeSubrange(min(produced, limit)...)
    return output
}

/// Compresses `input` into a zlib or gzip stream at zlib's level `level` (1 fast … 9 small).
package func deflate(_ input: [UInt8], container: DeflateContainer, level: Int32 = 6) throws -> [UInt8] {
    try deflate([input[...]], container: container, level: level)
}

/// Compresses the concatenation of `parts` (e.g. a header and the voxels, without joining
/// them first) into one zlib or gzip stream. The output grows as it fills instead of
/// reserving zlib's worst-case bound: a mask compresses to a few percent of its size.
package func deflate(_ parts: [ArraySlice<UInt8>], container: DeflateContainer, level: Int32 = 6) throws -> [UInt8] {
    var stream = z_stream()
    guard
        deflateInit2_(
            &stream, level, Z_DEFLATED, container.windowBits, 8, Z_DEFAULT_STRATEGY,
            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
    else {
        throw LiversegError.outOfMemory("zlib could not start deflating")
    }
    defer { deflateEnd(&stream) }
    let parts = parts.isEmpty ? [[]] : parts
    let total = parts.reduce(0) { $0 + $1.count }
    let bound = Int(deflateBound(&stream, uLong(total))) + 64
    var output = [UInt8](repeating: 0, count: min(bound, max(1 << 16, total / 16)))
    var produced = 0
    for (n, part) in parts.enumerated() {
        let last = n == parts.count - 1
        try part.withUnsafeBytes { src in
            let base = src.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
            var consumed = 0
            while true {
                if produced == output.count {
                    output.append(contentsOf: repeatElement(0, count: max(1 << 16, min(output.count, bound - output.count))))
                }
                let chunkIn = min(src.count - consumed, Int(UInt32.max))
                let chunkOut = min(output.count - produced, Int(UInt32.max))
                stream.next_in = base.map { $0 + consumed }
                stream.avail_in = uInt(chunkIn)
                let finishing = last && consumed + chunkIn == src.count
                let status: Int32 = output.withUnsafeMutableBytes { dst in
                    stream.next_out = dst.baseAddress!.assumingMemoryBound(to: Bytef.self) + produced
                    stream.avail_out = uInt(chunkOut)
                    return CZlib.deflate(&stream, finishing ? Z_FINISH : Z_NO_FLUSH)
                }
                consumed += chunkIn - Int(stream.avail_in)
                produced += chunkOut - Int(stream.avail_out)
                if status == Z_STREAM_END { return }
                guard status == Z_OK || status == Z_BUF_ERROR else {
                    throw LiversegError.internalError("zlib deflate failed with status \(status)")
                }
                // This part is consumed and zlib has room left: on to the next part.
                if !finishing, consumed == src.count, stream.avail_out > 0 { return }
            }
        }
    }
    output.removeSubrange(produced...)
    return output
}

/// The CRC-32 of `bytes` continuing from `crc` (PNG chunks, gzip trailers).
package func crc32(_ bytes: ArraySlice<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { raw in
        UInt32(CZlib.crc32(uLong(crc), raw.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(raw.count)))
    }
}
