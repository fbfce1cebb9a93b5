import LiversegSupport

/// A smooth random warp of a training patch: each control point of a coarse grid laid over
/// the patch moves by a random vector, and a uniform cubic B-spline spreads the moves over
/// the patch's voxels (a free-form deformation). It changes the liver's shape — lobe sizes,
/// how far the left lobe reaches — where rotations and scaling change only its pose and size:
/// a fold trains on four livers, too few shapes for a network to generalise from.
public struct ElasticDeformation: Equatable, Sendable {
    /// Distance between control points in patch voxels (model-grid voxels before scaling).
    public var controlSpacing: Int
    /// Largest move of a control point along each axis, in patch voxels; each component is
    /// drawn uniformly in ±. Below 0.4 · `controlSpacing`, so the warp never folds.
    public var maxDisplacement: Double

    /// Control-point moves up to this fraction of their spacing keep a 3D uniform cubic
    /// B-spline deformation one-to-one (Choi & Lee 2000: the bound is 1/K with K ≈ 2.48).
    public static let foldFreeFraction = 0.4

    /// A deformation (`PatchSampler` checks that `maxDisplacement` is below
    /// `foldFreeFraction · controlSpacing`).
    public init(controlSpacing: Int, maxDisplacement: Double) {
        self.controlSpacing = controlSpacing
        self.maxDisplacement = maxDisplacement
    }

    /// Whether the warp is one-to-one and well defined: spacing ≥ 1 voxel, moves in
    /// [0, foldFreeFraction · spacing).
    var isFoldFree: Bool {
        controlSpacing >= 1 && maxDisplacement >= 0 && maxDisplacement < Self.foldFreeFraction * Double(controlSpacing)
    }

    /// The displacement of every patch voxel in patch voxels, [Z, Y, X] with x fastest, drawn
    /// from `rng`: the cubic B-spline through random control moves, evaluated one axis at a
    /// time (x, then y, then z) so a 64 × 64 × 48 patch costs about 4 multiply-adds a voxel.
    func displacements(_ rng: inout SeededGenerator, patch: GridSize) -> [SIMD3<Double>] {
        // Control point c sits at (c − 1) · spacing, so voxel p between points i and i + 1
        // uses points i … i + 3: the grid needs ⌊(extent − 1) / spacing⌋ + 4 points per axis.
        let extents = [patch.x, patch.y, patch.z]
        let points = extents.map { ($0 - 1) / controlSpacing + 4 }
        let weights = extents.map { extent in (0..<extent).map { bsplineWeights(at: $0) } }
        var field = [SIMD3<Double>](repeating: .zero, count: patch.voxelCount)
        for component in 0..<3 {
            let moves = (0..<points.reduce(1, *)).map { _ in maxDisplacement * (2 * rng.uniform() - 1) }
            // Along x: [points z, points y, patch x].
            var alongX = [Double](repeating: 0, count: points[2] * points[1] * patch.x)
            for row in 0..<points[2] * points[1] {
                for x in 0..<patch.x {
                    let (first, w) = weights[0][x]
                    var sum = 0.0
                    for k in 0..<4 { sum += w[k] * moves[row * points[0] + first + k] }
                    alongX[row * patch.x + x] = sum
                }
            }
            // Along y: [points z, patch y, patch x].
            var alongY = [Double](repeating: 0, count: points[2] * patch.y * patch.x)
            for cz in 0..<points[2] {
                for y in 0..<patch.y {
                    let (first, w) = weights[1][y]
                    for k in 0..<4 {
                        let source = ((cz * points[1]) + first + k) * patch.x, target = (cz * patch.y + y) * patch.x
                        for x in 0..<patch.x { alongY[target + x] += w[k] * alongX[source + x] }
                    }
                }
            }
            // Along z: the patch.
            let plane = patch.y * patch.x
            for z in 0..<patch.z {
                let (first, w) = weights[2][z]
                for k in 0..<4 {
                    let source = (first + k) * plane
                    for o in 0..<plane { field[z * plane + o][component] += w[k] * alongY[source + o] }
                }
            }
        }
        return field
    }

    /// The first control point voxel `p` uses and the four uniform cubic B-spline weights
    /// (non-negative, summing to 1) of points first … first + 3.
    private func bsplineWeights(at p: Int) -> (first: Int, weights: [Double]) {
        let f = Double(p % controlSpacing) / Double(controlSpacing), g = 1 - f
        return (
            p / controlSpacing,
            [g * g * g / 6, (3 * f * f * f - 6 * f * f + 4) / 6, (-3 * f * f * f + 3 * f * f + 3 * f + 1) / 6, f * f * f / 6]
        )
    }
}
