import XCTest
@testable import LiversegVolume
@testable import LiversegVolume
@testable import LiversegSupport

final class OrientationTests: XCTestCase {
    func testOrientationOfMatrixAndMapping() throws {
        // i → −y (P), j → +z (S), k → −x (L): codes "PSL".
        let m: [Double] = [
            0, 0, -2, 10,
            -1, 0, 0, 5,
            0, 3, 0, 1,
            0, 0, 0, 1,
        ]
        let codes = try AxisMapping.axisCodes(ofIJKToRAS: m)
        XCTAssertEqual(codes.description, "PSL")
        let mapping = AxisMapping(from: codes, to: AxisCodes("RAS")!)
        // R comes from k (flipped: k runs toward L), A from i (flipped), S from j.
        XCTAssertEqual(mapping.sourceAxis, [2, 0, 1])
        XCTAssertEqual(mapping.flipped, [true, true, false])
        XCTAssertThrowsError(try AxisMapping.axisCodes(ofIJKToRAS: [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]))
    }

    func testAxisSamplesFollowTheCentreAlignedRule() {
        // 4 source voxels onto 2: centres at source coordinates 0.5 and 2.5.
        let down = AxisSamples(outputCount: 2, sourceCount: 4, sourceStride: 10, flipOutput: false, flipSource: false)
        XCTAssertEqual(down.lower, [0, 20])
        XCTAssertEqual(down.upper, [10, 30])
        XCTAssertEqual(down.weight, [0.5, 0.5])
        // 2 onto 4: coordinates −0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
        let up = AxisSamples(outputCount: 4, sourceCount: 2, sourceStride: 1, flipOutput: false, flipSource: false)
        XCTAssertEqual(up.lower, [0, 0, 0, 1])
        XCTAssertEqual(up.weight, [0, 0.25, 0.75, 0])
        let flipped = AxisSamples(outputCount: 4, sourceCount: 2, sourceStride: 1, flipOutput: true, flipSource: false)
        XCTAssertEqual(flipped.weight, up.weight.reversed())
    }
}
