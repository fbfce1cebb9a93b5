import LiversegSupport

/// Where one output index samples its source along one axis: two source offsets (already
/// multiplied by the source stride) and the weight of the upper one.
package struct AxisSamples {
    var lower: [Int]
    var upper: [Int]
    var weight: [Float]

    /// Linear sampling of an axis of `sourceCount` voxels onto `outputCount` voxels covering
    /// the same extent, voxel centres aligned as in `scipy.ndimage.zoom(grid_mode=True)`:
    /// output o reads source coordinate (o + ½)·sourceCount/outputCount − ½, clamped to the
    /// first and last voxel (scipy's mode "nearest"). `flipOutput` reverses the output index
    /// first, `flipSource` the source coordinate after: the axis flips of reorientation.
    package init(outputCount: Int, sourceCount: Int, sourceStride: Int, flipOutput: Bool, flipSource: Bool) {
        lower = []; upper = []; weight = []
        let scale = Double(sourceCount) / Double(outputCount)
        for o in 0..<outputCount {
            let index = flipOutput ? outputCount - 1 - o : o
            var c = min(max((Double(index) + 0.5) * scale - 0.5, 0), Double(sourceCount - 1))
            if flipSource { c = Double(sourceCount - 1) - c }
            let lo = Int(c.rounded(.down)), hi = min(lo + 1, sourceCount - 1)
            lower.append(lo * sourceStride)
            upper.append(hi * sourceStride)
            weight.append(Float(c - Double(lo)))
        }
    }

    /// The samples of outputs `range` only (a slab of output planes).
    package func slice(_ range: Range<Int>) -> AxisSamples {
        var s = self
        (s.lower, s.upper, s.weight) = (Array(lower[range]), Array(upper[range]), Array(weight[range]))
        return s
    }
}

/// Trilinear resampling with per-axis sample tables (output x fastest), the one routine
/// behind both directions of the pipeline: input grid → model grid, and back.
/// `transform` maps each interpolated value (e.g. HU normalisation). `progress` receives
/// the fraction done between rounds of output planes (`parallelRounds`) and may throw.
package func resampleTrilinear(
    _ source: VoxelStorage, x: AxisSamples, y: AxisSamples, z: AxisSamples,
    into output: UnsafeMutablePointer<Float>, threads: Int,
    progress: (Double) throws -> Void, transform: (Float) -> Float
) rethrows {
    // Dispatched here, in this module, so that each voxel type's loop is specialised.
    switch source {
    case .int16(let p):
        try resampleTrilinear(p, x: x, y: y, z: z, into: output, threads: threads, progress: progress, transform: transform)
    case .int32(let p):
        try resampleTrilinear(p, x: x, y: y, z: z, into: output, threads: threads, progress: progress, transform: transform)
    case .float32(let p):
        try resampleTrilinear(p, x: x, y: y, z: z, into: output, threads: threads, progress: progress, transform: transform)
    }
}

private func resampleTrilinear<T: HounsfieldVoxel>(
    _ source: UnsafePointer<T>, x: AxisSamples, y: AxisSamples, z: AxisSamples,
    into output: UnsafeMutablePointer<Float>, threads: Int,
    progress: (Double) throws -> Void, transform: (Float) -> Float
) rethrows {
    let nx = x.weight.count, ny = y.weight.count, nz = z.weight.count
    nonisolated(unsafe) let output = output
    try parallelRounds(nz, threads: threads, checkpoint: progress) { _, planes in
        for k in planes {
            let wz = z.weight[k], z0 = z.lower[k], z1 = z.upper[k]
            for j in 0..<ny {
                let wy = y.weight[j], y0 = y.lower[j], y1 = y.upper[j]
                let row = output + (k * ny + j) * nx
                for i in 0..<nx {
                    let wx = x.weight[i], x0 = x.lower[i], x1 = x.upper[i]
                    @inline(__always) func lerpX(_ o: Int) -> Float {
                        let a = source[o + x0].hounsfield, b = source[o + x1].hounsfield
                        return a + wx * (b - a)
                    }
                    let c00 = lerpX(z0 + y0), c01 = lerpX(z0 + y1), c10 = lerpX(z1 + y0), c11 = lerpX(z1 + y1)
                    let c0 = c00 + wy * (c01 - c00), c1 = c10 + wy * (c11 - c10)
                    row[i] = transform(c0 + wz * (c1 - c0))
                }
            }
        }
    }
}
