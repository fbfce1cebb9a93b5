import LiversegSupport

/// The SLiver07 scores of one case (Heimann et al., IEEE TMI 28(8), 2009): each measure m
/// becomes max(0, 100 − 25·m/m_ref), where m_ref is the human second rater's average, so a
/// result as good as a second human scores 75.
public struct SLiver07Scores: Equatable, Sendable {
    /// Score of VOE.
    public var voe: Double
    /// Score of |VD|.
    public var vd: Double
    /// Score of AvgD.
    public var avgD: Double
    /// Score of RMSD.
    public var rmsD: Double
    /// Score of MaxD.
    public var maxD: Double
    /// Mean of the five scores.
    public var total: Double { (voe + vd + avgD + rmsD + maxD) / 5 }

    /// The second rater's averages m_ref: VOE 6.4 %, VD 4.7 %, AvgD 1 mm, RMSD 1.8 mm, MaxD
    /// 19 mm (Heimann et al. 2009, Section III).
    public static let referenceValues = (voe: 6.4, vd: 4.7, avgD: 1.0, rmsD: 1.8, maxD: 19.0)

    /// max(0, 100 − 25·m/reference); 0 for an infinite m.
    public static func score(_ m: Double, reference: Double) -> Double {
        max(0, 100 - 25 * abs(m) / reference)
    }
}

/// Agreement between a segmentation A and a reference B, with SLiver07's definitions.
///
/// Surface distances are symmetric: the distance from every border voxel of A to the
/// nearest border voxel of B and from every border voxel of B to the nearest of A, pooled,
/// in mm with the voxel spacing applied.
///
/// Empty masks: both empty is perfect agreement (Dice 1, every error 0). One empty: Dice 0,
/// VOE 100, VD −100 (A empty) or +∞ (B empty), every surface distance +∞ (there is no
/// surface to measure to), and the affected scores 0. Nothing is NaN.
public struct SegmentationMetrics: Equatable, Sendable {
    /// 2|A∩B| / (|A| + |B|), in [0, 1].
    public var dice: Double
    /// Volumetric overlap error 100·(1 − |A∩B|/|A∪B|), in %.
    public var voe: Double
    /// Signed relative volume difference 100·(|A| − |B|)/|B|, in %.
    public var vd: Double
    /// Average symmetric surface distance (pooled mean), mm.
    public var avgD: Double
    /// Root mean square symmetric surface distance, mm.
    public var rmsD: Double
    /// Maximum symmetric surface distance (Hausdorff distance), mm.
    public var maxD: Double
    /// 95th percentile of the pooled distances of both directions (MedPy's hd95
    /// convention; numpy's linear interpolation between order statistics), mm.
    public var hd95: Double
    /// Mean distance from A's border to B's border alone (MedPy's asd(A, B)), mm.
    public var meanDistanceSegmentationToReference: Double
    /// Mean distance from B's border to A's border alone, mm.
    public var meanDistanceReferenceToSegmentation: Double
    /// |A| in voxels.
    public var segmentationVoxels: Int
    /// |B| in voxels.
    public var referenceVoxels: Int
    /// Number of border voxels of A.
    public var segmentationBorderVoxels: Int
    /// Number of border voxels of B.
    public var referenceBorderVoxels: Int

    /// The SLiver07 scores of these measures.
    public var scores: SLiver07Scores {
        let r = SLiver07Scores.referenceValues
        return SLiver07Scores(
            voe: SLiver07Scores.score(voe, reference: r.voe), vd: SLiver07Scores.score(vd, reference: r.vd),
            avgD: SLiver07Scores.score(avgD, reference: r.avgD), rmsD: SLiver07Scores.score(rmsD, reference: r.rmsD),
            maxD: SLiver07Scores.score(maxD, reference: r.maxD))
    }
}

/// Compares a segmentation with a reference on the same grid. Non-zero bytes are object.
///
/// - Parameters:
///   - segmentation: A, one byte per voxel, x fastest.
///   - reference: B, the same layout.
///   - size: grid extents.
///   - spacing: voxel size in mm along x, y, z (finite, > 0).
///   - connectivity: neighbourhood defining border voxels; SLiver07's program uses 18.
///   - threads: worker threads (0: all cores); results do not depend on it.
public func evaluateSegmentation(
    _ segmentation: [UInt8], _ reference: [UInt8], size: GridSize, spacing: [Double],
    connectivity: BorderConnectivity = .edges, threads: Int = 0
) throws -> SegmentationMetrics {
    try segmentation.withUnsafeBufferPointer { a in
        try reference.withUnsafeBufferPointer { b in
            try evaluateSegmentation(a, b, size: size, spacing: spacing, connectivity: connectivity, threads: threads)
        }
    }
}

/// Dice 2|A∩B| / (|A| + |B|) of two masks of equal length (nonzero voxels inside), 1 when
/// both are empty: `evaluateSegmentation`'s Dice without its surface distances, for scores
/// taken often (the validation Dice logged every training epoch).
public func diceCoefficient(_ segmentation: [UInt8], _ reference: [UInt8]) throws -> Double {
    guard segmentation.count == reference.count else {
        throw LiversegError.invalidArgument(
            "segmentation (\(segmentation.count) voxels) and reference (\(reference.count)) must have the same number of voxels")
    }
    var (a, b, both) = (0, 0, 0)
    for (sa, sb) in zip(segmentation, reference) {
        if sa != 0 { a += 1 }
        if sb != 0 { b += 1 }
        if sa != 0 && sb != 0 { both += 1 }
    }
    return dice(segmentationVoxels: a, referenceVoxels: b, overlap: both)
}

/// 2·overlap / (|A| + |B|); 1 when both masks are empty.
private func dice(segmentationVoxels a: Int, referenceVoxels b: Int, overlap both: Int) -> Double {
    a + b == 0 ? 1 : 2 * Double(both) / Double(a + b)
}

/// `evaluateSegmentation` on borrowed masks (the C API's, without a copy).
package func evaluateSegmentation(
    _ segmentation: UnsafeBufferPointer<UInt8>, _ reference: UnsafeBufferPointer<UInt8>,
    size: GridSize, spacing: [Double], connectivity: BorderConnectivity = .edges,
    threads: Int = 0
) throws -> SegmentationMetrics {
    guard size.x >= 1, size.y >= 1, size.z >= 1 else {
        throw LiversegError.invalidArgument("evaluation grid \(size) must be at least 1 along every axis")
    }
    let count = try checkedProduct([size.x, size.y, size.z], what: "evaluation grid")
    guard segmentation.count == count, reference.count == count else {
        throw LiversegError.invalidArgument(
            "segmentation (\(segmentation.count) voxels) and reference (\(reference.count)) must both have \(count) voxels for \(size)"
        )
    }
    guard spacing.count == 3, spacing.allSatisfy({ $0.isFinite && $0 > 0 }) else {
        throw LiversegError.invalidArgument("spacing \(spacing) must be three finite values > 0 mm")
    }
    var (a, b, both) = (0, 0, 0)
    // Bounding box of A ∪ B: borders and all nearest-border searches lie inside it.
    var (x0, y0, z0, x1, y1, z1) = (Int.max, Int.max, Int.max, -1, -1, -1)
    for k in 0..<size.z {
        for j in 0..<size.y {
            let row = (k * size.y + j) * size.x
            for i in 0..<size.x {
                let (sa, sb) = (segmentation[row + i] != 0, reference[row + i] != 0)
                if sa { a += 1 }
                if sb { b += 1 }
                if sa && sb { both += 1 }
                if sa || sb {
                    (x0, y0, z0) = (min(x0, i), min(y0, j), min(z0, k))
                    (x1, y1, z1) = (max(x1, i), max(y1, j), max(z1, k))
                }
            }
        }
    }
    let lo = [x0, y0, z0], hi = [x1, y1, z1]
    let union = a + b - both
    var m = SegmentationMetrics(
        dice: dice(segmentationVoxels: a, referenceVoxels: b, overlap: both),
        voe: union == 0 ? 0 : 100 * (1 - Double(both) / Double(union)),
        vd: b == 0 ? (a == 0 ? 0 : .infinity) : 100 * Double(a - b) / Double(b),
        avgD: 0, rmsD: 0, maxD: 0, hd95: 0,
        meanDistanceSegmentationToReference: 0, meanDistanceReferenceToSegmentation: 0,
        segmentationVoxels: a, referenceVoxels: b, segmentationBorderVoxels: 0, referenceBorderVoxels: 0)
    if a == 0 && b == 0 { return m }
    let box = GridSize(x: hi[0] - lo[0] + 1, y: hi[1] - lo[1] + 1, z: hi[2] - lo[2] + 1)
    func crop(_ mask: UnsafeBufferPointer<UInt8>) -> [Bool] {
        var out = [Bool](repeating: false, count: box.voxelCount)
        for k in 0..<box.z {
            for j in 0..<box.y {
                let src = ((k + lo[2]) * size.y + j + lo[1]) * size.x + lo[0], dst = (k * box.y + j) * box.x
                for i in 0..<box.x { out[dst + i] = mask[src + i] != 0 }
            }
        }
        return out
    }
    let borderA = crop(segmentation).withUnsafeBufferPointer {
        borderVoxels(of: $0, size: box, connectivity: connectivity, threads: threads)
    }
    let borderB = crop(reference).withUnsafeBufferPointer {
        borderVoxels(of: $0, size: box, connectivity: connectivity, threads: threads)
    }
    /// Distances (mm) from each border voxel of `from` to the nearest border voxel of `to`.
    func distances(from: [Bool], to: [Bool]) throws -> [Double] {
        let squared = try to.withUnsafeBufferPointer {
            try squaredDistanceTransform(isFeature: $0, size: box, spacing: spacing, threads: threads)
        }
        return from.indices.compactMap { from[$0] ? squared[$0].squareRoot() : nil }
    }
    let dAB = try distances(from: borderA, to: borderB), dBA = try distances(from: borderB, to: borderA)
    m.segmentationBorderVoxels = dAB.count
    m.referenceBorderVoxels = dBA.count
    if a == 0 || b == 0 {
        (m.avgD, m.rmsD, m.maxD, m.hd95) = (.infinity, .infinity, .infinity, .infinity)
        (m.meanDistanceSegmentationToReference, m.meanDistanceReferenceToSegmentation) = (.infinity, .infinity)
        return m
    }
    let pooled = (dAB + dBA).sorted()
    let n = Double(pooled.count)
    m.avgD = pooled.reduce(0, +) / n
    m.rmsD = (pooled.reduce(0) { $0 + $1 * $1 } / n).squareRoot()
    m.maxD = pooled[pooled.count - 1]
    m.hd95 = percentile(sorted: pooled, 0.95)
    m.meanDistanceSegmentationToReference = dAB.reduce(0, +) / Double(dAB.count)
    m.meanDistanceReferenceToSegmentation = dBA.reduce(0, +) / Double(dBA.count)
    return m
}

/// The p-quantile of sorted values with linear interpolation between order statistics
/// (numpy.percentile's default).
func percentile(sorted values: [Double], _ p: Double) -> Double {
    let h = Double(values.count - 1) * p
    let lower = Int(h.rounded(.down)), upper = min(lower + 1, values.count - 1)
    return values[lower] + (h - Double(lower)) * (values[upper] - values[lower])
}
