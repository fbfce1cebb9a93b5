import LiversegSupport
import LiversegImageIO
import LiversegVolume
import LiversegPipeline

/// The `--statistics` fields of a mask on its CT (see `MaskStatistics`); an empty mask
/// has null HU statistics and bounding box.
func liverStatistics(ct: Image, mask: [UInt8]) throws -> [(String, JSONValue)] {
    let s = try ct.withVolumeInput { try MaskStatistics(volume: $0, mask: mask) }
    let numbers = { (v: [Double]) in JSONValue.array(v.map { .number($0) }) }
    let integers = { (v: [Int]) in numbers(v.map(Double.init)) }
    var box = JSONValue.null
    if let b = s.boundingBox {
        box = .object([
            ("min_voxel", integers(b.minVoxel)), ("max_voxel", integers(b.maxVoxel)), ("extent_mm", numbers(b.extentMM)),
            ("ras_min_mm", numbers(b.rasMinMM)), ("ras_max_mm", numbers(b.rasMaxMM)),
        ])
    }
    let hu = s.intensities
    return [
        ("voxels", .number(Double(s.voxels))), ("volume_ml", .number(s.volumeML)), ("components", .number(Double(s.components))),
        ("hu_mean", hu.map { .number($0.mean) } ?? .null), ("hu_sd", hu.map { .number($0.standardDeviation) } ?? .null),
        ("hu_median", hu.map { .number($0.median) } ?? .null), ("bounding_box", box),
    ]
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
        warnings.append(
            "no voxel below -500 HU (lowest \(lowest.readable)): not CT in Hounsfield units? "
                + "(air is -1000 HU; a missing rescale intercept shifts every value)")
    }
    if distinct.count <= 3 {
        warnings.append("only \(distinct.count) distinct value\(distinct.count == 1 ? "" : "s"): a mask or label map, not a CT?")
    }
    // The head-to-foot axis: the voxel axis whose direction is most superior-inferior.
    let spacing = ct.spacing, extents = [ct.size.x, ct.size.y, ct.size.z]
    let slicesAxis = (0..<3).max { abs(ct.ijkToRAS[8 + $0]) / spacing[$0] < abs(ct.ijkToRAS[8 + $1]) / spacing[$1] } ?? 2
    if extents[slicesAxis] < 10 {
        warnings.append(
            "only \(extents[slicesAxis]) slice\(extents[slicesAxis] == 1 ? "" : "s") head to foot: "
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
