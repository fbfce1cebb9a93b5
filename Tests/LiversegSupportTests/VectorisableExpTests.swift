import XCTest

@testable import LiversegSupport

#if canImport(Glibc)
import Glibc
#endif

final class VectorisableExpTests: XCTestCase {
    func testVectorisableExpMatchesLibm() {
        // Every 1e-4 step over the clamped range, against float64 exp.
        var worst = 0.0
        for step in 0...1_756_000 {
            let x = Float(-87.3 + Double(step) * 1e-4)
            let exact = exp(Double(x))
            worst = max(worst, abs(Double(vectorisableExp(x)) - exact) / exact)
        }
        XCTAssertLessThan(worst, 2.5e-7)  // 2 ulp of float32 is up to 2.4e-7 relative
        // Beyond the range it saturates to finite values instead of 0 or ∞.
        XCTAssertEqual(vectorisableExp(-1000), vectorisableExp(-87.3))
        XCTAssertTrue(vectorisableExp(1000).isFinite)
        XCTAssertTrue(vectorisableExp(.nan).isNaN)
    }
}
