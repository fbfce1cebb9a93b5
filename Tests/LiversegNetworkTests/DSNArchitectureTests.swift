import XCTest
@testable import LiversegNetwork
@testable import LiversegNetwork

final class DSNArchitectureTests: XCTestCase {
    func testPaperParameterCount() {
        // The count Python's independently written model_file.parameter_shapes gives.
        XCTAssertEqual(DSNArchitecture.paper.parameterCount, 305_422)
    }

    /// The flat layout: parameterShapes' tensors back to back, in order, nothing between.
    func testParameterTableLaysTheTensorsOutBackToBack() {
        let a = DSNArchitecture.paper
        let table = a.parameterTable
        XCTAssertEqual(table.map(\.name), a.parameterShapes.map(\.name))
        XCTAssertEqual(table.map(\.shape), a.parameterShapes.map(\.shape))
        XCTAssertEqual(table.first?.offset, 0)
        for (previous, next) in zip(table, table.dropFirst()) { XCTAssertEqual(previous.range.upperBound, next.offset) }
        XCTAssertEqual(table.last?.range.upperBound, a.parameterCount)
        XCTAssertEqual(table.filter(\.isWeight).count, table.count / 2)
    }
}
