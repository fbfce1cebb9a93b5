import Foundation
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

    func testStandardizesPathsLexically() {
        let cwd = standardizedPath(".")
        XCTAssertTrue(cwd.hasPrefix("/") && !cwd.hasSuffix("/") && cwd != "/")
        let parent = cwd.split(separator: "/").dropLast().joined(separator: "/")
        let expected = [
            ("/a//b/./c/..", "/a/b"), ("/a/b/", "/a/b"), ("/", "/"), ("/a/../..", "/"), ("//a", "/a"),
            ("x", cwd + "/x"), ("./x/", cwd + "/x"), ("../x", "/" + parent + "/x"), ("a/../../b", "/" + parent + "/b"),
        ]
        for (path, standardized) in expected { XCTAssertEqual(standardizedPath(path), standardized, path) }
        let last = [("a/b.nii.gz", "b.nii.gz"), ("cases/case1/", "case1"), ("cases/case1/.", "case1"), ("/", "")]
        for (path, name) in last { XCTAssertEqual(lastPathComponent(path), name, path) }
        let parents = [("a", ""), ("a/b", "a"), ("a/b/", "a"), ("/a/b", "/a"), ("/a", "/"), ("/", "/"), ("", "")]
        for (path, folder) in parents { XCTAssertEqual(parentFolder(path), folder, path) }
        XCTAssertEqual(resolvedPath("/tmp/../tmp/."), resolvedPath("/tmp"))
        XCTAssertNil(resolvedPath("/no/such/path"))
    }

    func testTrimsAndPadsText() {
        // Foundation, which the library and the command no longer link, is the oracle for trimming.
        let padding = CharacterSet.whitespacesAndNewlines.union(CharacterSet(charactersIn: "\0"))
        for text in ["", " ", "ab", "  a b \n", "\0CT\0 ", "\t\r\nx", "\u{00A0}y\u{2003}", "é "] {
            XCTAssertEqual(text.trimmingWhitespace(and: ["\0"]), text.trimmingCharacters(in: padding), text.debugDescription)
        }
        XCTAssertEqual("ab".leftPadded(to: 5), "   ab")
        XCTAssertEqual("ab".rightPadded(to: 5), "ab   ")
        XCTAssertEqual("é\r\n".rightPadded(to: 3), "é\r\n ")  // columns are characters
        XCTAssertEqual("longer".leftPadded(to: 3), "longer")
    }

    func testFormatsAsFoundationDoes() {
        for value in [0.0, -1.25, 123.456789, 1e-9, 7e22, .infinity, -.nan] {
            for conversion: StaticString in ["%.1f", "%.4f", "%.6f", "%g", "%10.4f"] {
                XCTAssertEqual(formatted(value, conversion), String(format: "\(conversion)", value), "\(conversion) \(value)")
            }
        }
    }
}
