import XCTest
@testable import LiversegDICOM

#if canImport(Glibc)
import Glibc
#endif

final class FolderSearchTests: XCTestCase {
    /// What a DICOM folder search reads: regular files at any depth and links to files;
    /// not hidden entries, links to folders (a link loop cannot hang it), or FIFOs.
    func testFindsRegularFilesAndLinksToFilesOnly() throws {
        var template = Array("/tmp/liverseg-dicom-XXXXXX".utf8CString)
        let root = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { _ = system("rm -rf '\(root)'") }
        let setup = [
            "mkdir -p sub/deeper .hidden", "touch f1 sub/f2 sub/deeper/f3 .hidden/f4 .f5", "ln -s sub/f2 linkfile",
            "ln -s sub linkfolder", "ln -s . loop", "ln -s missing dangling", "mkfifo pipe",
        ]
        XCTAssertEqual(system("cd '\(root)' && " + setup.joined(separator: " && ")), 0)
        let expected = ["f1", "linkfile", "sub/deeper/f3", "sub/f2"].map { root + "/" + $0 }
        XCTAssertEqual(try regularFiles(under: root), expected)
        XCTAssertEqual(try regularFiles(under: root + "/"), expected)
        XCTAssertThrowsError(try regularFiles(under: root + "/none"))
    }
}
