import CLiverseg
import LiversegSupport
import LiversegPipeline
import LiversegTraining

@_cdecl("liverseg_evaluate")
public func liverseg_evaluate(
    _ segmentation: UnsafePointer<UInt8>?, _ reference: UnsafePointer<UInt8>?,
    _ dims: UnsafePointer<Int>?, _ spacing: UnsafePointer<Double>?, _ connectivity: Int32,
    _ nThreads: Int32, _ outMetrics: UnsafeMutablePointer<liverseg_metrics>?
) -> liverseg_status {
    boundary("liverseg_evaluate") {
        let a = try required(segmentation, "segmentation"), b = try required(reference, "reference")
        let dims = try required(dims, "dims"), spacing = try required(spacing, "spacing")
        let out = try required(outMetrics, "out_metrics")
        try checkStructSize(out.pointee.struct_size, expected: MemoryLayout<liverseg_metrics>.size, "out_metrics")
        let extents = try (0..<3).map { try checkedSize(UInt(bitPattern: dims[$0]), "dims[\($0)]") }
        guard extents.allSatisfy({ $0 >= 1 }) else {
            throw LiversegError.invalidArgument("dims \(extents) must all be at least 1")
        }
        let count = try checkedProduct(extents, what: "dims")
        guard let neighbourhood = connectivity == 0 ? .edges : BorderConnectivity(rawValue: Int(connectivity)) else {
            throw LiversegError.invalidArgument("connectivity \(connectivity) must be 6, 18, 26 or 0 (18)")
        }
        guard nThreads >= 0 else { throw LiversegError.invalidArgument("n_threads \(nThreads) must be >= 0") }
        let m = try evaluateSegmentation(
            UnsafeBufferPointer(start: a, count: count), UnsafeBufferPointer(start: b, count: count),
            size: GridSize(x: extents[0], y: extents[1], z: extents[2]),
            spacing: (0..<3).map { spacing[$0] }, connectivity: neighbourhood, threads: Int(nThreads))
        let s = m.scores
        var r = liverseg_metrics()
        r.struct_size = MemoryLayout<liverseg_metrics>.size
        (r.dice, r.voe, r.vd, r.avg_d, r.rms_d, r.max_d, r.hd95) = (m.dice, m.voe, m.vd, m.avgD, m.rmsD, m.maxD, m.hd95)
        (r.mean_distance_a_to_b, r.mean_distance_b_to_a) = (
            m.meanDistanceSegmentationToReference, m.meanDistanceReferenceToSegmentation
        )
        (r.voxels_a, r.voxels_b) = (m.segmentationVoxels, m.referenceVoxels)
        (r.border_voxels_a, r.border_voxels_b) = (m.segmentationBorderVoxels, m.referenceBorderVoxels)
        (r.score_voe, r.score_vd, r.score_avg_d, r.score_rms_d, r.score_max_d, r.score_total) = (
            s.voe, s.vd, s.avgD, s.rmsD, s.maxD, s.total
        )
        out.pointee = r
    }
}

@_cdecl("liverseg_measure_mask")
public func liverseg_measure_mask(
    _ ct: UnsafePointer<liverseg_volume>?, _ mask: UnsafePointer<UInt8>?,
    _ out: UnsafeMutablePointer<liverseg_mask_statistics>?
) -> liverseg_status {
    boundary("liverseg_measure_mask") {
        let mask = try required(mask, "mask")
        let out = try required(out, "out")
        try checkStructSize(out.pointee.struct_size, expected: MemoryLayout<liverseg_mask_statistics>.size, "out")
        let s = try withVolumeInput(ct) { volume in
            try MaskStatistics(volume: volume, mask: Array(UnsafeBufferPointer(start: mask, count: volume.size.voxelCount)))
        }
        var r = liverseg_mask_statistics()
        r.struct_size = MemoryLayout<liverseg_mask_statistics>.size
        (r.voxels, r.volume_ml, r.components) = (s.voxels, s.volumeML, s.components)
        let hu = s.intensities
        (r.hu_mean, r.hu_sd, r.hu_median) = (hu?.mean ?? .nan, hu?.standardDeviation ?? .nan, hu?.median ?? .nan)
        let box = s.boundingBox
        func int3(_ v: [Int]?) -> (Int64, Int64, Int64) { v.map { (Int64($0[0]), Int64($0[1]), Int64($0[2])) } ?? (-1, -1, -1) }
        func double3(_ v: [Double]?) -> (Double, Double, Double) { v.map { ($0[0], $0[1], $0[2]) } ?? (.nan, .nan, .nan) }
        (r.min_voxel, r.max_voxel) = (int3(box?.minVoxel), int3(box?.maxVoxel))
        (r.extent_mm, r.ras_min_mm, r.ras_max_mm) = (double3(box?.extentMM), double3(box?.rasMinMM), double3(box?.rasMaxMM))
        out.pointee = r
    }
}
