import Foundation
import LiversegCore

/// Liver statistics of a 0/1 mask on a CT's grid: voxels, volume (ml), HU mean, standard
/// deviation (population) and median inside the mask, bounding box (voxel indices, its
/// extent in mm along i, j, k, and the RAS box of its voxel centres) and the number of
/// 6-connected components. An empty mask has null HU statistics and bounding box.
func liverStatistics(ct: Image, mask: [UInt8]) -> [(String, JSONValue)] {
    let size = [ct.size.x, ct.size.y, ct.size.z], spacing = ct.spacing
    var values: [Double] = []
    var lower = size, upper = [-1, -1, -1]
    for k in 0..<size[2] {
        for j in 0..<size[1] {
            for i in 0..<size[0] {
                let index = i + size[0] * (j + size[1] * k)
                guard mask[index] != 0 else { continue }
                values.append(ct.intensity(at: index))
                for (axis, v) in [i, j, k].enumerated() {
                    lower[axis] = min(lower[axis], v)
                    upper[axis] = max(upper[axis], v)
                }
            }
        }
    }
    let components = mask.withUnsafeBufferPointer { componentCount(mask: $0, size: ct.size) }
    var fields: [(String, JSONValue)] = [
        ("voxels", .number(Double(values.count))),
        ("volume_ml", .number(Double(values.count) * spacing.reduce(1, *) / 1000)),
        ("components", .number(Double(components))),
    ]
    guard !values.isEmpty else {
        return fields + ["hu_mean", "hu_sd", "hu_median", "bounding_box"].map { ($0, JSONValue.null) }
    }
    let mean = values.reduce(0, +) / Double(values.count)
    let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
    values.sort()
    let middle = values.count / 2
    let median = values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
    // The RAS box of the voxel centres: the corners of the index box mapped through ijkToRAS.
    let m = ct.ijkToRAS
    var rasLower = [Double](repeating: .infinity, count: 3), rasUpper = [Double](repeating: -.infinity, count: 3)
    for corner in 0..<8 {
        let ijk = (0..<3).map { Double((corner >> $0) & 1 == 0 ? lower[$0] : upper[$0]) }
        for r in 0..<3 {
            let x = m[r * 4] * ijk[0] + m[r * 4 + 1] * ijk[1] + m[r * 4 + 2] * ijk[2] + m[r * 4 + 3]
            rasLower[r] = min(rasLower[r], x)
            rasUpper[r] = max(rasUpper[r], x)
        }
    }
    let numbers = { (v: [Double]) in JSONValue.array(v.map { .number($0) }) }
    fields += [
        ("hu_mean", .number(mean)), ("hu_sd", .number(variance.squareRoot())), ("hu_median", .number(median)),
        ("bounding_box", .object([
            ("min_voxel", numbers(lower.map(Double.init))), ("max_voxel", numbers(upper.map(Double.init))),
            ("extent_mm", numbers((0..<3).map { Double(upper[$0] - lower[$0] + 1) * spacing[$0] })),
            ("ras_min_mm", numbers(rasLower)), ("ras_max_mm", numbers(rasUpper)),
        ])),
    ]
    return fields
}

/// Why `ct` may not be a CT in Hounsfield units (empty when it looks like one). These are
/// warnings: the image is segmented all the same.
func plausibilityWarnings(_ ct: Image) -> [String] {
    var lowest = Double.infinity
    var distinct = Set<Double>()
    for i in 0..<ct.size.voxelCount {
        let v = ct.intensity(at: i)
        lowest = min(lowest, v)
        if distinct.count <= 3 { distinct.insert(v) }
    }
    var warnings: [String] = []
    if lowest > -500 {
        warnings.append("no voxel below -500 HU (lowest \(lowest.readable)): not CT in Hounsfield units? "
                        + "(air is -1000 HU; a missing rescale intercept shifts every value)")
    }
    if distinct.count <= 3 {
        warnings.append("only \(distinct.count) distinct value\(distinct.count == 1 ? "" : "s"): a mask or label map, not a CT?")
    }
    // The head-to-foot axis: the voxel axis whose direction is most superior-inferior.
    let spacing = ct.spacing, extents = [ct.size.x, ct.size.y, ct.size.z]
    let slicesAxis = (0..<3).max { abs(ct.ijkToRAS[8 + $0]) / spacing[$0] < abs(ct.ijkToRAS[8 + $1]) / spacing[$1] } ?? 2
    if extents[slicesAxis] < 10 {
        warnings.append("only \(extents[slicesAxis]) slice\(extents[slicesAxis] == 1 ? "" : "s") head to foot: "
                        + "the network sees the liver in 3D and needs a volume")
    }
    return warnings
}

extension Double {
    /// The value as a person reads it: the shortest decimal of its float32 rounding when it
    /// is a float32 value (NIfTI stores spacing and geometry as float32: 0.743, not
    /// 0.7429999709129333), else the shortest decimal that round-trips.
    var readable: String {
        if rounded() == self, abs(self) < 1e15 { return String(Int64(self)) }
        let single = Float(self)
        return Double(single) == self ? single.description : description
    }
}
