import LiversegSupport

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
                    for dz in 0..<2 {
                        for dy in 0..<2 {
                            let row = src + ((2 * oz + dz) * inSize.y + 2 * oy + dy) * inSize.x + 2 * ox
                            m = max(m, max(row[0], row[1]))
                        }
                    }
                    dst[oy * outSize.x + ox] = m
                }
            }
        }
        return output
    }

    /// Backward pass: dL/dY [C, Z/2, Y/2, X/2] goes to the first maximum of each window of
    /// the input X [C, Z, Y, X] (scanned z, y, x), zero elsewhere.
    public static func backward<Scalar: NetworkScalar>(
        input: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
        threads: Int
    ) throws -> Tensor<Scalar> {
        let inSize = input.size, outSize = outputGradient.size
        let gradient = try Tensor<Scalar>(channels: input.channels, size: inSize, zeroed: true)
        parallelFor(input.channels * outSize.z, threads: threads) { cz in
            let (c, oz) = cz.quotientAndRemainder(dividingBy: outSize.z)
            let src = input.channel(c), dst = gradient.channel(c)
            let dy = outputGradient.channel(c) + oz * outSize.y * outSize.x
            for oy in 0..<outSize.y {
                for ox in 0..<outSize.x {
                    var best = -Scalar.infinity, at = 0
                    for d in 0..<8 {
                        let i = ((2 * oz + d / 4) * inSize.y + 2 * oy + (d / 2) % 2) * inSize.x + 2 * ox + d % 2
                        if src[i] > best { best = src[i]; at = i }
                    }
                    dst[at] = dy[oy * outSize.x + ox]
                }
            }
        }
        return gradient
    }
}
