import XCTest
@testable import LiversegSupport

final class JSONTests: XCTestCase {
    func testParsesNestedDocument() throws {
        let v = try parseJSON(Array(#"{"a": [1, 2.5e1, -0.5], "b": {"c": "x\u00e9\n"}, "d": true, "e": null}"#.utf8))
        XCTAssertEqual(v["a"], .array([.number(1), .number(25), .number(-0.5)]))
        XCTAssertEqual(v["b"]?["c"], .string("xé\n"))
        XCTAssertEqual(v["d"], .bool(true))
        XCTAssertEqual(v["e"], .null)
    }

    func testRoundTripsThroughSerializer() throws {
        let v = JSONValue.object([("k", .array([.number(3), .string("q\"\\")])), ("z", .number(0.25))])
        XCTAssertEqual(try parseJSON(Array(v.serialized.utf8)), v)
    }

    func testRejectsMalformedText() {
        for text in ["", "{", "[1,]", "{\"a\" 1}", "01", "\"\\x\"", "[1] x", "\"\\ud800\"", "1e999"] {
            XCTAssertThrowsError(try parseJSON(Array(text.utf8)), "accepted \(text)")
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        XCTAssertThrowsError(try parseJSON(Array(deep.utf8)))
    }
}
