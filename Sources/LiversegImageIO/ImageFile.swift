#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport

/// An image file format, chosen from a path's extension.
public enum ImageFormat: String, CaseIterable, Sendable {
    /// .nii
    case nifti
    /// .nii.gz
    case niftiGzip
    /// .nrrd (attached data; written gzip-compressed)
    case nrrd
    /// .nhdr + detached .raw.gz data
    case nrrdDetached
    /// .mha (local data; written compressed)
    case metaImage
    /// .mhd + detached .raw (written uncompressed, as SLiver07 distributes it)
    case metaImageDetached

    /// The format a path's extension names (case-insensitive), or an error listing them.
    public init(path: String) throws {
        let lower = path.lowercased()
        let table: [(String, ImageFormat)] = [
            (".nii.gz", .niftiGzip), (".nii", .nifti), (".nrrd", .nrrd), (".nhdr", .nrrdDetached),
            (".mha", .metaImage), (".mhd", .metaImageDetached),
        ]
        guard let format = table.first(where: { lower.hasSuffix($0.0) })?.1 else {
            throw LiversegError.invalidArgument(
                "\(path): unknown image file extension (use .nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd)")
        }
        self = format
    }
}

/// The folder part of a path ("" for a bare name), with a trailing slash.
private func folder(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "" }
    return String(path[...slash])
}

/// The file name part of a path.
private func fileName(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return path }
    return String(path[path.index(after: slash)...])
}

/// Reads an image file of any supported format (chosen by extension; a detached data file
/// is found relative to its header). Errors name the path and the offending field.
public func readImage(_ path: String) throws -> Image {
    let format = try ImageFormat(path: path)
    do {
        return try decodeImage(try readWholeFile(path), format: format) { name in
            try readWholeFile(name.hasPrefix("/") ? name : folder(of: path) + name)
        }
    } catch LiversegError.invalidArgument(let m) {
        throw LiversegError.invalidArgument("\(path): \(m)")
    } catch LiversegError.unsupported(let m) {
        throw LiversegError.unsupported("\(path): \(m)")
    }
}

/// Decodes the bytes of an image file in `format`; `detached(name)` gives the bytes of a
/// detached data file named in the header. Every format takes the same two steps: parse the
/// header, then decode the data block (inflated where compressed) into the image's one voxel
/// buffer — the storage of `bytes`, of the detached file or of the inflated stream, reused
/// in place when no one else holds it. Pure apart from what `detached` does.
public func decodeImage(
    _ bytes: consuming [UInt8], format: ImageFormat, detached: (String) throws -> [UInt8]
) throws -> Image {
    // Headers are parsed in statements of their own, so that no slice of `file` is alive
    // when it is consumed.
    let file = consume bytes
    switch format {
    case .nifti, .niftiGzip:
        if !hasGzipMagic(file[...]) {
            let header = try NIfTI.parseHeader(file[...])
            return try NIfTI.decode(header, file: consume file)
        }
        // The header says how large the file is: inflate that much and no more.
        let header = try NIfTI.parseHeader(
            try inflate(file[...], expected: NIfTI.headerSize, prefix: true, what: "gzip data")[...])
        return try NIfTI.decode(header, file: try inflate(file[...], expected: try header.fileSize(), what: "gzip data"))
    case .nrrd, .nrrdDetached:
        let header = try NRRD.parseHeader(file[...])
        guard let name = header.dataFile else { return try NRRD.decode(header, data: consume file, from: header.dataStart) }
        return try NRRD.decode(header, data: try detached(name), from: 0)
    case .metaImage, .metaImageDetached:
        let header = try MetaImage.parseHeader(file[...])
        guard let name = header.dataFile else {
            return try MetaImage.decode(header, data: consume file, from: header.dataStart)
        }
        return try MetaImage.decode(header, data: try detached(name), from: 0)
    }
}

/// The bytes of each file that writing `image` to `path` creates: the header file first,
/// then for detached formats the data file (.nhdr → .raw.gz, .mhd → .raw next to it).
public func encodeImageFiles(_ image: Image, path: String) throws -> [(path: String, bytes: [UInt8])] {
    let format = try ImageFormat(path: path)
    switch format {
    case .nifti:
        return [(path, try NIfTI.serialize(image))]
    case .niftiGzip:
        return [(path, try deflate([try NIfTI.header(of: image)[...], image.data[...]], container: .gzip))]
    case .nrrd:
        return [(path, try NRRD.serialize(image, encoding: .gzip).header)]
    case .nrrdDetached:
        let dataPath = String(path.dropLast(".nhdr".count)) + ".raw.gz"
        let (header, data) = try NRRD.serialize(image, encoding: .gzip, dataFile: fileName(of: dataPath))
        return [(path, header), (dataPath, data)]
    case .metaImage:
        return [(path, try MetaImage.serialize(image, compressed: true).header)]
    case .metaImageDetached:
        let dataPath = String(path.dropLast(".mhd".count)) + ".raw"
        let (header, data) = try MetaImage.serialize(image, compressed: false, dataFile: fileName(of: dataPath))
        return [(path, header), (dataPath, data)]
    }
}

/// Writes `image` to `path` in the format its extension names, atomically: every file is
/// staged first (see `StagedFile`), a detached data file is put in place before its header,
/// and a failure leaves none of them under their names.
public func writeImage(_ image: Image, to path: String) throws {
    try commitAll(try stageImage(image, to: path))
}

/// The files that writing `image` to `path` creates, staged and not yet in place, in the
/// order to commit them (a detached data file before its header).
package func stageImage(_ image: Image, to path: String) throws -> [StagedFile] {
    try encodeImageFiles(image, path: path).reversed().map { try StagedFile($0.bytes, for: $0.path) }
}

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk and renames it
/// over `path`: readers see the old file or the whole new one, never a partial one, and a
/// failure leaves nothing under `path` (the temporary file is removed).
package func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    try StagedFile(bytes, for: path).commit()
}

/// Puts staged files in place in order. If one fails, those this call already put in
/// place are removed and the rest discarded: all of them appear, or none.
package func commitAll(_ files: [StagedFile]) throws {
    var committed: [StagedFile] = []
    do {
        for file in files {
            try file.commit()
            committed.append(file)
        }
    } catch {
        for file in committed { unlink(file.path) }
        throw error
    }
}

/// Throws unless `path` can be written as an image: a known extension and an existing,
/// writable folder. Lets a command refuse a bad output before a long computation.
public func checkImageOutput(_ path: String) throws {
    _ = try ImageFormat(path: path)
    try checkOutputFolder(path)
}

/// Throws `io` unless the folder that would hold `path` exists and is writable.
public func checkOutputFolder(_ path: String) throws {
    let dir = folder(of: path).isEmpty ? "." : folder(of: path)
    var info = stat()
    guard stat(dir, &info) == 0 else {
        throw LiversegError.io("cannot write \(path): folder \(dir): \(String(cString: strerror(errno)))")
    }
    guard info.st_mode & S_IFMT == S_IFDIR else { throw LiversegError.io("cannot write \(path): \(dir) is not a folder") }
    guard access(dir, W_OK | X_OK) == 0 else {
        throw LiversegError.io("cannot write \(path): folder \(dir): \(String(cString: strerror(errno)))")
    }
}

/// A file's bytes written under a temporary name next to its destination and flushed to
/// disk, not yet visible under its name: `commit` renames it into place; a staged file
/// never committed is removed when released.
public final class StagedFile {
    /// Where `commit` puts the file.
    public let path: String
    private let temporary: String
    private var pending = true

    /// Writes and flushes `bytes` to a new temporary file in `path`'s folder.
    public init(_ bytes: [UInt8], for path: String) throws {
        var temporary = "", fd: Int32 = -1
        for _ in 0..<16 where fd < 0 {
            temporary = folder(of: path) + "." + fileName(of: path) + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd < 0, errno != EEXIST { break }
        }
        guard fd >= 0 else {
            throw LiversegError.io("cannot create a temporary file next to \(path): \(String(cString: strerror(errno)))")
        }
        var success = false
        defer {
            if !success { unlink(temporary) }
        }
        var written = 0
        let writeError: Int32? = bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                written += n
            }
            return nil
        }
        let syncFailed = writeError == nil && fsync(fd) != 0
        let syncErrno = errno
        let closeFailed = close(fd) != 0
        if let writeError { throw LiversegError.io("cannot write \(path): \(String(cString: strerror(writeError)))") }
        if syncFailed || closeFailed {
            throw LiversegError.io("cannot write \(path): \(String(cString: strerror(syncFailed ? syncErrno : errno)))")
        }
        success = true
        self.path = path
        self.temporary = temporary
    }

    /// Renames the file into place (atomically replacing any file there).
    public func commit() throws {
        guard pending else { return }
        guard rename(temporary, path) == 0 else {
            throw LiversegError.io("cannot rename the temporary file to \(path): \(String(cString: strerror(errno)))")
        }
        pending = false
    }

    deinit {
        if pending { unlink(temporary) }
    }
}
