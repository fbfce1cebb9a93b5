import Foundation
import XCTest

@testable import LiversegSupport

/// Holds a buffer for another thread to release.
private final class Box: @unchecked Sendable {
    var buffer: Buffer<Float>?
    init(_ buffer: Buffer<Float>) { self.buffer = buffer }
}

final class BufferPoolTests: XCTestCase {
    let large = BufferPool.minimumBytes / MemoryLayout<Float>.stride  // floats in the smallest pooled buffer

    func testLargeBuffersInsideUsingAreReusedAndZeroedOnRequest() throws {
        let pool = BufferPool()
        let first = try pool.using { try Buffer<Float>(count: large, zeroed: false) }
        let address = first.pointer
        first.pointer.update(repeating: 7, count: large)
        _ = consume first
        XCTAssertEqual(pool.keptBytes, BufferPool.minimumBytes)
        let again = try pool.using { try Buffer<Float>(count: large, zeroed: true) }
        XCTAssertEqual(again.pointer, address, "the freed block of the same size is reused")
        XCTAssertTrue(again.buffer.allSatisfy { $0 == 0 }, "zeroed: true clears a reused block")
        XCTAssertEqual(pool.keptBytes, 0)
    }

    func testOtherSizesSmallBuffersAndOtherThreadsAreNotServed() throws {
        let pool = BufferPool()
        try pool.using { _ = try Buffer<Float>(count: large, zeroed: false) }
        XCTAssertEqual(pool.keptBytes, BufferPool.minimumBytes)
        // Another size, a buffer under the minimum, a buffer outside `using`: none takes it.
        try pool.using {
            _ = try Buffer<Float>(count: large + 1, zeroed: false)
            _ = try Buffer<Float>(count: large / 2, zeroed: false)
        }
        _ = try Buffer<Float>(count: large, zeroed: false)
        XCTAssertEqual(pool.keptBytes, 2 * BufferPool.minimumBytes + 4, "the larger buffer joined the pool")
        // A pooled buffer freed on another thread returns to its pool.
        let box = Box(try pool.using { try Buffer<Float>(count: large, zeroed: false) })
        XCTAssertEqual(pool.keptBytes, BufferPool.minimumBytes + 4)
        let freed = DispatchSemaphore(value: 0)
        Thread {
            box.buffer = nil
            freed.signal()
        }.start()
        freed.wait()
        XCTAssertEqual(pool.keptBytes, 2 * BufferPool.minimumBytes + 4)
        pool.trim()
        XCTAssertEqual(pool.keptBytes, 0)
    }

    func testTheLimitBoundsWhatIsKept() throws {
        let pool = BufferPool(limitBytes: BufferPool.minimumBytes)
        try pool.using {
            let a = try Buffer<Float>(count: large, zeroed: false)
            let b = try Buffer<Float>(count: large, zeroed: false)
            XCTAssertNotEqual(a.pointer, b.pointer)
        }
        XCTAssertEqual(pool.keptBytes, BufferPool.minimumBytes, "the second block went back to the system")
    }

    func testNestedUsingServesFromTheInnermostPool() throws {
        let (outer, inner) = (BufferPool(), BufferPool())
        try outer.using {
            try inner.using { _ = try Buffer<Float>(count: large, zeroed: false) }
            _ = try Buffer<Float>(count: large, zeroed: false)
        }
        XCTAssertEqual(inner.keptBytes, BufferPool.minimumBytes)
        XCTAssertEqual(outer.keptBytes, BufferPool.minimumBytes)
        XCTAssertNil(BufferPool.current)
    }
}
