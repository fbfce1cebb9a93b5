import XCTest
@testable import LiversegNetwork
@testable import LiversegNetwork

final class DSNArchitectureTests: XCTestCase {
    func testPaperParameterCount() {
        // The count Python's independently written model_file.parameter_shapes gives.
        XCTAssertEqual(DSNArchitecture.paper.parameterCount, 305_422)
    }
}
