import XCTest
@testable import LiversegSupport
@testable import LiversegSupport

final class AxisCodesTests: XCTestCase {
    func testAxisCodesParseAndReject() {
        XCTAssertEqual(AxisCodes("LPS")?.rasAxis, [0, 1, 2])
        XCTAssertEqual(AxisCodes("LPS")?.sign, [-1, -1, 1])
        XCTAssertEqual(AxisCodes("ASR")?.rasAxis, [1, 2, 0])
        XCTAssertEqual(AxisCodes("ial")?.description, "IAL")
        for bad in ["RAR", "RA", "RASX", "XYZ", "LRS", "IAS"] { XCTAssertNil(AxisCodes(bad), bad) }
    }
}
