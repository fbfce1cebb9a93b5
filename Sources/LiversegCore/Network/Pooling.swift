/// 2×2×2 max-pooling with stride 2.
///
/// Shapes: input [C, Z, Y, X] (even extents) → output [C, Z/2, Y/2, X/2].
public enum MaxPool2: Sendable {
    /// Forward pass.
    public static func forward<Scalar: NetworkScalar>(_ input: Tensor<Scalar>, threads: Int) throws -> Tensor<Scalar> {
        let inSize = input.size, outSize = input.size.divided(by: 2)
        precondition(inSize.x % 2 == 0 && inSize.y % 2 == 0 && inSize.z % 2 == 0)
        let output = try Tensor<Scalar>(channels: input.channels, size: outSize, zeroed: false)
        parallelFor(input.channels * outSize.z, threads: threads) { cz in
            let (c, oz) = (cz / outSize.z, cz % outSize.z)
            let src = input.channel(c), dst = output.channel(c) + oz * outSize.y * outSize.x
            for oy in 0..<outSize.y {
                for ox in 0..<outSize.x {
                    var m = -Scalar.infinity
                    for dz in 0..<2 { for dy in 0..<2 {
                        let row = src + ((2 * oz + dz) * inSize.y + 2 * oy + dy) * inSize.x + 2 * ox
                        m = max(m, max(row[0], row[1]))
                    } }
                    dst[oy * outSize.x + ox] = m
                }
            }
        }
        return output
    }
}
