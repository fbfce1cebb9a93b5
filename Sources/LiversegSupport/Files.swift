#if canImport(Glibc)
import Glibc
#endif

/// The most bytes liverseg reads from one file or decompresses from one stream (8 GiB): a
/// bound on what a header, a file or a compressed stream can make it allocate.
package let maximumDataBytes = 1 << 33

/// Reads a whole regular file of at most `maximumDataBytes`, reporting failures as
/// `LiversegError.io` with the path and reason. Anything else (a FIFO, a device such as
/// /dev/zero, a folder) is refused before reading: it could block or never end.
public func readWholeFile(_ path: String) throws -> [UInt8] {
    func failure(_ what: String, _ code: Int32 = errno) -> LiversegError {
        .io("cannot \(what) \(path): \(String(cString: strerror(code)))")
    }
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw failure("open") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw failure("examine") }
    guard info.st_mode & S_IFMT == S_IFREG else {
        throw LiversegError.io("cannot read \(path): not a regular file")
    }
    guard Int(info.st_size) <= maximumDataBytes else {
        throw LiversegError.io("cannot read \(path): \(info.st_size) bytes, more than the \(maximumDataBytes) liverseg reads")
    }
    // The size may change while reading: read at most one byte beyond the limit to tell.
    var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
    var count = 0
    while true {
        if count == bytes.count {
            guard count <= maximumDataBytes else {
                throw LiversegError.io("cannot read \(path): it grew beyond the \(maximumDataBytes) bytes liverseg reads")
            }
            bytes.append(contentsOf: repeatElement(0, count: min(max(count, 1 << 20), maximumDataBytes + 1 - count)))
        }
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw failure("read")
        }
        if n == 0 { break }
        count += n
    }
    bytes.removeSubrange(count...)
    return bytes
}

/// Whether `path` names something that exists (symbolic links followed).
public func pathExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0
}

/// Whether `path` names a regular file (symbolic links followed): not a folder, FIFO or device.
public func isRegularFile(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
}

/// Whether `path` names a folder (symbolic links followed).
public func isFolder(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
}

/// The names in the folder `path`, without "." and "..", in the order the file system gives.
public func folderEntries(_ path: String) throws -> [String] {
    guard let folder = opendir(path) else {
        throw LiversegError.io("cannot list \(path): \(String(cString: strerror(errno)))")
    }
    defer { closedir(folder) }
    var names: [String] = []
    while let entry = readdir(folder) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Creates the folder `path` and any missing parents (like `mkdir -p`); an existing folder
/// is fine, anything else in the way is an error.
public func createFolders(_ path: String) throws {
    if path.isEmpty || isFolder(path) { return }
    let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    if !parent.isEmpty { try createFolders(parent) }
    // EEXIST: another process may create it between the check and here.
    guard mkdir(path, 0o777) == 0 || (errno == EEXIST && isFolder(path)) else {
        throw LiversegError.io("cannot create the folder \(path): \(String(cString: strerror(errno)))")
    }
}

/// `path` made absolute (against the working folder), with ".", ".." and repeated slashes
/// removed lexically: symbolic links are not followed, and ".." above the root stays at the root.
public func standardizedPath(_ path: String) -> String {
    var absolute = path
    if !path.hasPrefix("/") {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        if getcwd(&buffer, buffer.count) != nil { absolute = String(cString: buffer) + "/" + path }
    }
    var components: [Substring] = []
    for component in absolute.split(separator: "/") where component != "." {
        if component == ".." {
            _ = components.popLast()
        } else {
            components.append(component)
        }
    }
    return "/" + components.joined(separator: "/")
}

/// The last component of `path` (after `standardizedPath`; "" for the root).
public func lastPathComponent(_ path: String) -> String {
    String(standardizedPath(path).split(separator: "/").last ?? "")
}

/// The folder part of `path`, lexically: "a/b" and "a/b/" → "a", "/b" → "/", "b" → "".
public func parentFolder(_ path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "" }
    return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
}

/// `path` with every symbolic link, "." and ".." resolved (realpath); nil when it does not
/// exist.
public func resolvedPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// The value of the environment variable `name`, nil when unset.
public func environmentValue(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// Writes `text` to standard error (unbuffered, so it interleaves with progress lines).
public func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}
