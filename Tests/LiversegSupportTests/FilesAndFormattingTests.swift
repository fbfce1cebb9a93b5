import XCTest
@testable import LiversegSupport

#if canImport(Glibc)
import Glibc
#endif

final class FilesAndFormattingTests: XCTestCase {
    private func temporaryFolder() throws -> String {
        var template = Array("/tmp/liverseg-files-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw LiversegError.io("mkdtemp failed") }
        return String(cString: made)
    }

    func testCreatesNestedFoldersAndListsThem() throws {
        let root = try temporaryFolder()
        defer { _ = system("rm -rf '\(root)'") }
        XCTAssertTrue(isFolder(root))
        XCTAssertFalse(pathExists(root + "/a"))
        try createFolders(root + "/a/b/c/")
        try createFolders(root + "/a/b")  // already there: fine
        try createFolders(root + "/a/x")
        XCTAssertTrue(isFolder(root + "/a/b/c"))
        XCTAssertEqual(try folderEntries(root + "/a").sorted(), ["b", "x"])
        XCTAssertEqual(try folderEntries(root + "/a/b/c"), [])

        let file = root + "/a/file"
        XCTAssertEqual(system("touch '\(file)'"), 0)
        XCTAssertTrue(pathExists(file))
        XCTAssertFalse(isFolder(file))
        XCTAssertEqual(try folderEntries(root + "/a").sorted(), ["b", "file", "x"])
        XCTAssertThrowsError(try createFolders(file + "/below")) { error in
            XCTAssertTrue("\(error)".contains(file), "\(error)")
        }
        XCTAssertThrowsError(try folderEntries(file)) { error in XCTAssertTrue("\(error)".contains(file)) }
        XCTAssertThrowsError(try folderEntries(root + "/missing"))
    }

    func testFormatsAsPrintfDoes() {
        XCTAssertEqual(formatted(0.123456, "%.4f"), "0.1235")
        XCTAssertEqual(formatted(17.84, "%.1f"), "17.8")
        XCTAssertEqual(formatted(-0.0, "%.6f"), "-0.000000")
        XCTAssertEqual(formatted(10, "%g"), "10")
        XCTAssertEqual(formatted(0.5, "%g"), "0.5")
        XCTAssertEqual(formatted(1e-7, "%g"), "1e-07")
        XCTAssertEqual(formatted(.nan, "%.4f"), "nan")
        // The longest "%.1f" there is: every digit of the largest double, read back exactly.
        let longest = formatted(-.greatestFiniteMagnitude, "%.1f")
        XCTAssertEqual(longest.count, 1 + 309 + 2)
        XCTAssertEqual(Double(longest), -.greatestFiniteMagnitude)
    }
}
