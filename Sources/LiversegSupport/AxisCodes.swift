/// Anatomical directions of a volume's three voxel axes, as nibabel's axis codes: "RAS"
/// means i increases toward the patient's Right, j toward Anterior, k toward Superior.
public struct AxisCodes: Equatable, Sendable, CustomStringConvertible {
    /// For each voxel axis: which RAS axis (0 = R/L, 1 = A/P, 2 = S/I) it runs along.
    public let rasAxis: [Int]
    /// For each voxel axis: +1 if it increases toward R, A or S; −1 toward L, P or I.
    public let sign: [Int]

    private static let positive: [Character] = ["R", "A", "S"]
    private static let negative: [Character] = ["L", "P", "I"]

    /// Parses a three-letter code such as "RAS" or "LPS"; nil if not a valid orientation.
    public init?(_ code: String) {
        let letters = Array(code.uppercased())
        guard letters.count == 3 else { return nil }
        var axes: [Int] = [], signs: [Int] = []
        for c in letters {
            if let a = Self.positive.firstIndex(of: c) {
                axes.append(a); signs.append(1)
            } else if let a = Self.negative.firstIndex(of: c) {
                axes.append(a); signs.append(-1)
            } else {
                return nil
            }
        }
        guard Set(axes).count == 3 else { return nil }
        rasAxis = axes
        sign = signs
    }

    /// Builds codes from per-axis RAS axes and signs (a permutation and ±1 each).
    package init(rasAxis: [Int], sign: [Int]) { self.rasAxis = rasAxis; self.sign = sign }

    public var description: String {
        String(zip(rasAxis, sign).map { $1 > 0 ? Self.positive[$0] : Self.negative[$0] })
    }
}
