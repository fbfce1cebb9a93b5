#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64: a small generator whose sequence depends only on its seed, so training is
/// reproducible on every platform and Swift version.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    /// The whole state.
    public private(set) var state: UInt64

    /// A generator starting from `seed`.
    public init(seed: UInt64) { state = seed }

    /// A generator for one (stream, index) pair of a seed: independent of how many numbers
    /// other streams drew, which keeps prefetching and resuming deterministic.
    public init(seed: UInt64, stream: UInt64, index: UInt64) {
        var g = SeededGenerator(seed: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15))
        for _ in 0..<2 { _ = g.next() }
        state = g.next() ^ (index &* 0xBF58_476D_1CE4_E5B9)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// A standard normal sample (Box–Muller).
    public mutating func gaussian() -> Double {
        let u = max(uniform(), 1e-300), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
