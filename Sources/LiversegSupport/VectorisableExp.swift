/// e^x in float32 without a libm call or a branch, so loops over it vectorise (a scalar
/// expf call per point and iteration was a tenth of a CRF slice's time; the network's
/// two-class softmax uses it too). Cephes' expf:
/// x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two for an exact n·ln 2), a degree-7
/// polynomial for e^r, and 2^n put in the exponent bits; within 2 ulp of e^x for x in
/// [−87.3, 88.3]. x is clamped to that range, so e^x stays a finite normal float; NaN
/// stays NaN.
@inlinable @inline(__always)
public func vectorisableExp(_ x: Float) -> Float {
    let clamped = min(max(x, -87.3), 88.3)
    // Round to nearest by adding 1.5·2^23 (no rounding instruction in the baseline x86-64
    // instruction set); the sum's low mantissa bits are then n itself, which gives 2^n
    // without a float-to-integer conversion (that one traps on NaN in debug builds).
    let shifted = clamped * 1.442_695_04 + 12_582_912
    let n = shifted - 12_582_912
    let r = (clamped - n * 0.693_359_375) - n * -2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 0.166_666_655
    p = p * r + 0.500_000_01
    p = p * r * r + r + 1
    return p * Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
}
