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
    // Each output value is lerp_z(lerp_y(lerp_x(·))). The x-interpolated source rows that
    // the y samples read are computed once per source plane and kept while consecutive
    // output planes read that plane (mapping back up-samples: a source row serves several
    // output rows and planes), then blended per output voxel. The expressions and their
    // order are those of one voxel at a time, so the values are too.
    let rowOffsets = Array(Set(y.lower + y.upper)).sorted()
    let slotOf = Dictionary(uniqueKeysWithValues: rowOffsets.enumerated().map { ($1, $0) })
    let lowerRow = y.lower.map { slotOf[$0]! }, upperRow = y.upper.map { slotOf[$0]! }
    let planeCount = rowOffsets.count * nx
    nonisolated(unsafe) let output = output
    try parallelRounds(nz, threads: threads, checkpoint: progress) { _, planes in
        // Two cached source planes of x-interpolated rows, and the plane offset each holds.
        let cache = UnsafeMutablePointer<Float>.allocate(capacity: 2 * planeCount)
        defer { cache.deallocate() }
        var held = [-1, -1]
        func interpolatedPlane(_ zOffset: Int, avoiding other: Int) -> UnsafeMutablePointer<Float> {
            if let slot = held.firstIndex(of: zOffset) { return cache + slot * planeCount }
            let slot = held[0] == other ? 1 : 0
            held[slot] = zOffset
            let plane = cache + slot * planeCount
            x.lower.withUnsafeBufferPointer { lower in
                x.upper.withUnsafeBufferPointer { upper in
                    x.weight.withUnsafeBufferPointer { weight in
                        for (r, rowOffset) in rowOffsets.enumerated() {
                            let base = source + zOffset + rowOffset, row = plane + r * nx
                            for i in 0..<nx { row[i] = lerp(base[lower[i]].hounsfield, base[upper[i]].hounsfield, weight[i]) }
                        }
                    }
                }
            }
            return plane
        }
        for k in planes {
            let wz = z.weight[k]
            let p0 = interpolatedPlane(z.lower[k], avoiding: z.upper[k])
            let p1 = interpolatedPlane(z.upper[k], avoiding: z.lower[k])
            for j in 0..<ny {
                let wy = y.weight[j]
                let r00 = p0 + lowerRow[j] * nx, r01 = p0 + upperRow[j] * nx
                let r10 = p1 + lowerRow[j] * nx, r11 = p1 + upperRow[j] * nx
                let row = output + (k * ny + j) * nx
                for i in 0..<nx {
                    row[i] = transform(lerp(lerp(r00[i], r01[i], wy), lerp(r10[i], r11[i], wy), wz))
                }
            }
        }
    }
}

/// a + w·(b − a): the value at weight w (0 at a, 1 at b) on the line from a to b.
@inline(__always)
private func lerp(_ a: Float, _ b: Float, _ w: Float) -> Float { a + w * (b - a) }
