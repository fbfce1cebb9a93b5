import XCTest
@testable import LiversegSupport

final class ParallelTests: XCTestCase {
    /// Every index once, checkpoints after each round with rising fractions ending at 1.
    func testRoundsCoverEveryIndexAndReportProgress() throws {
        let count = 10_000
        var seen = [UInt8](repeating: 0, count: count)
        var fractions: [Double] = []
        seen.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer.baseAddress!
            parallelRounds(count, threads: 3, checkpoint: { fractions.append($0) }) { _, range in
                for i in range { out[i] += 1 }
            }
        }
        XCTAssertEqual(seen, [UInt8](repeating: 1, count: count))
        XCTAssertGreaterThan(fractions.count, 1)
        XCTAssertEqual(fractions, fractions.sorted())
        XCTAssertEqual(fractions.last, 1)
    }

    /// A throwing checkpoint stops the loop after the round in progress.
    func testThrowingCheckpointStops() {
        var rounds = 0
        XCTAssertThrowsError(
            try parallelRounds(
                1_000_000, threads: 2,
                checkpoint: { _ in
                    rounds += 1
                    throw LiversegError.cancelled
                }
            ) { _, _ in })
        XCTAssertEqual(rounds, 1)
    }

    /// Round sizes follow the measured time: 4x growth at most, shrinking when slow.
    func testRoundSizerAimsAtItsTarget() {
        var sizer = RoundSizer(minimum: 2)
        XCTAssertEqual(sizer.size, 2)
        sizer.finished(seconds: 0)
        XCTAssertEqual(sizer.size, 8)
        sizer.finished(seconds: RoundSizer.target / 2)
        XCTAssertEqual(sizer.size, 16)
        sizer.finished(seconds: RoundSizer.target * 8)
        XCTAssertEqual(sizer.size, 2)
    }
}
