import COpenBLAS
import XCTest
@testable import LiversegNetwork
@testable import LiversegNetwork

final class BLASThreadsTests: XCTestCase {
    /// The host's OpenBLAS thread count is restored after the outermost scope, also when
    /// scopes nest.
    func testBLASThreadCountIsRestored() {
        openblas_set_num_threads(2)
        let host = openblas_get_num_threads()
        withSingleThreadedBLAS {
            XCTAssertEqual(openblas_get_num_threads(), 1)
            withSingleThreadedBLAS { XCTAssertEqual(openblas_get_num_threads(), 1) }
            XCTAssertEqual(openblas_get_num_threads(), 1)
        }
        XCTAssertEqual(openblas_get_num_threads(), host)
        openblas_set_num_threads(1)
    }
}
