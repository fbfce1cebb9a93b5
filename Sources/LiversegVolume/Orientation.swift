import LiversegSupport

/// How a volume's voxel axes map onto a target orientation: canonical axis j runs along
/// source axis `sourceAxis[j]`, reversed when `flipped[j]`. Pure axis permutation and
/// flips, so the mapping back is exact.
public struct AxisMapping: Equatable, Sendable {
    /// For each target axis, the source axis it runs along.
    public let sourceAxis: [Int]
    /// For each target axis, whether it runs opposite to its source axis.
    public let flipped: [Bool]

    /// The identity mapping.
    public static let identity = AxisMapping(sourceAxis: [0, 1, 2], flipped: [false, false, false])

    /// Creates a mapping from explicit axes and flips.
    public init(sourceAxis: [Int], flipped: [Bool]) { self.sourceAxis = sourceAxis; self.flipped = flipped }

    /// The orientation of a voxel→RAS matrix (row-major 4×4): each voxel axis is assigned
    /// the RAS axis its column points along most, as nibabel's aff2axcodes does. Throws
    /// when two voxel axes point along the same RAS axis (degenerate or 45° oblique).
    public static func axisCodes(ofIJKToRAS m: [Double]) throws -> AxisCodes {
        var axes: [Int] = [], signs: [Int] = []
        for column in 0..<3 {
            let c = (0..<3).map { m[$0 * 4 + column] }
            let dominant = (0..<3).max { abs(c[$0]) < abs(c[$1]) }!
            axes.append(dominant)
            signs.append(c[dominant] >= 0 ? 1 : -1)
        }
        guard Set(axes).count == 3 else {
            throw LiversegError.invalidArgument(
                "ijk_to_ras has no clear axis orientation (two columns point along the same RAS axis)")
        }
        return AxisCodes(rasAxis: axes, sign: signs)
    }

    /// The mapping that reorients a volume with orientation `source` to `target`.
    public init(from source: AxisCodes, to target: AxisCodes) {
        var axes: [Int] = [], flips: [Bool] = []
        for j in 0..<3 {
            let i = source.rasAxis.firstIndex(of: target.rasAxis[j])!
            axes.append(i)
            flips.append(source.sign[i] != target.sign[j])
        }
        self.init(sourceAxis: axes, flipped: flips)
    }
}
