#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegPipeline

/// Synthetic lesions painted into the liver of a training patch: ellipsoids of one grey value,
/// darker or brighter than the liver around them, clipped to the liver's labels, which stay
/// liver. Reference masks count tumours as liver, but four training livers show few of them:
/// left out, the held-out IRCADb-17 fold loses its two large hypodense tumours (208 ml at a
/// median 66 HU in a 103 HU liver, network probability 0.01–0.14), the error behind the
/// under-segmented livers of CT with many tumours.
public struct LesionSynthesis: Equatable, Sendable {
    /// Probability that a patch holding liver gets lesions.
    public var probability: Double
    /// Most lesions per patch; each such patch gets 1 … `maxCount`, uniformly.
    public var maxCount: Int
    /// Range of each semi-axis in mm, drawn per axis (log-uniformly, so small lesions are as
    /// common as large ones).
    public var radiusMillimetres: ClosedRange<Double>
    /// Range of the lesion's grey value minus the mean of the patch's liver, in HU.
    public var contrastHU: ClosedRange<Double>

    /// Lesions whose border blends into the liver over this many mm (a partial-volume edge).
    public static let edgeMillimetres = 3.0

    /// A synthesis with these ranges (`PatchSampler` checks them).
    public init(probability: Double, maxCount: Int, radiusMillimetres: ClosedRange<Double>, contrastHU: ClosedRange<Double>) {
        self.probability = probability
        self.maxCount = maxCount
        self.radiusMillimetres = radiusMillimetres
        self.contrastHU = contrastHU
    }

    /// Whether the ranges make sense: a probability, at least one lesion, positive finite
    /// radii and finite contrasts.
    var isValid: Bool {
        (0...1).contains(probability) && maxCount >= 1 && radiusMillimetres.lowerBound > 0
            && radiusMillimetres.upperBound.isFinite && contrastHU.lowerBound.isFinite && contrastHU.upperBound.isFinite
    }

    /// Paints lesions drawn from `rng` into `patch` (normalised intensities [Z, Y, X], x
    /// fastest, of extents `size`) where `labels` say liver. Each lesion is centred on a random
    /// liver voxel; a voxel at normalised ellipsoid radius r moves towards the lesion's value by
    /// w = clamp((1 − r) · (smallest semi-axis) / edge, 0, 1). Values stay inside the HU window.
    func paint(
        _ rng: inout SeededGenerator, patch: UnsafeMutablePointer<Float>, labels: [UInt8], size: GridSize,
        preprocessing p: Preprocessing
    ) {
        guard rng.uniform() < probability else { return }
        let liver = labels.indices.filter { labels[$0] != 0 }
        guard !liver.isEmpty else { return }
        let liverMean = liver.reduce(0.0) { $0 + Double(patch[$1]) } / Double(liver.count)
        let lower = p.normalise(-.infinity), upper = p.normalise(.infinity)
        let logRadius = (log(radiusMillimetres.lowerBound), log(radiusMillimetres.upperBound))
        let extents = [size.x, size.y, size.z]
        let count = 1 + Int(rng.next() % UInt64(maxCount))
        for _ in 0..<count {
            let centre = size.coordinates(ofIndex: liver[Int(rng.next() % UInt64(liver.count))])
            let radiusMM = (0..<3).map { _ in exp(logRadius.0 + rng.uniform() * (logRadius.1 - logRadius.0)) }
            let contrast = contrastHU.lowerBound + rng.uniform() * (contrastHU.upperBound - contrastHU.lowerBound)
            let value = Float(min(max(liverMean + contrast / p.std, Double(lower)), Double(upper)))
            let radius = (0..<3).map { radiusMM[$0] / p.spacing[$0] }  // in voxels
            let sharpness = radiusMM.min()! / Self.edgeMillimetres
            let range = (0..<3).map { a in
                max(0, centre[a] - Int(radius[a].rounded(.up)))...min(extents[a] - 1, centre[a] + Int(radius[a].rounded(.up)))
            }
            for z in range[2] {
                for y in range[1] {
                    for x in range[0] {
                        let o = (z * size.y + y) * size.x + x
                        guard labels[o] != 0 else { continue }
                        let dx = Double(x - centre[0]) / radius[0], dy = Double(y - centre[1]) / radius[1]
                        let dz = Double(z - centre[2]) / radius[2]
                        let r = (dx * dx + dy * dy + dz * dz).squareRoot()
                        let w = Float(min(max((1 - r) * sharpness, 0), 1))
                        patch[o] += w * (value - patch[o])
                    }
                }
            }
        }
    }
}
