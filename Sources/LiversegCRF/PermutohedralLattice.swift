#if canImport(Glibc)
import Glibc
#endif
import CKernels
import LiversegSupport

/// Gaussian filtering in a d-dimensional feature space with the permutohedral lattice
/// (Adams, Baek & Davis 2010): for points with features f_i it approximates
///
///     out_i = Σ_j exp(−|f_i − f_j|² / 2) · in_j
///
/// (the j = i term included) in O(N·d²) to build and O(N·d) per filtering, for any number
/// of value channels. Callers divide features by the kernel's bandwidth θ first.
///
/// Built once per point set and reused for every filtering (each mean-field iteration).
/// Features stay float32 — no quantisation — and lattice keys are Int32 coordinates after
/// shifting features to start at 0, so overflow is checked once up front instead of
/// wrapping silently (pydensecrf's 16-bit keys crash for small θ).
///
/// Built and applied in parallel, and deterministic: every sum is taken in a fixed order
/// that depends on the points alone (the splat's chunks below), so results are
/// bit-identical whatever the thread count. Not safe to filter from two threads at once
/// (it reuses its scratch); `filter` runs its own parallel loops.
public final class PermutohedralLattice {
    /// Feature dimension d.
    public let dimension: Int
    /// Number of points.
    public let pointCount: Int
    /// Number of lattice vertices the points touch.
    public let vertexCount: Int

    /// The d+1 vertices of each point's enclosing simplex and its barycentric weights.
    private let pointVertex: Buffer<Int32>
    private let pointWeight: Buffer<Float>
    /// The splat runs over this many contiguous chunks of points, each scattering into its
    /// own vertex values, summed afterwards in chunk order: a fixed order for any thread
    /// count. Set from the point and vertex counts so that the chunks' values take at most
    /// a byte per point and channel, and at most `maxSplatChunks`.
    private let splatChunks: Int
    /// For each of the d+1 blur directions and each vertex, its two neighbours; a missing
    /// neighbour points at the always-zero sentinel vertex `vertexCount`.
    private let neighbours: Buffer<Int32>
    /// Ping-pong vertex values for `filter` and the splat chunks' values (all but the first
    /// chunk's, which go straight into the first), grown to the largest channel count used.
    private var scratch: (a: Buffer<Float>, b: Buffer<Float>, chunks: Buffer<Float>)?

    /// Largest feature dimension supported.
    public static let maxDimension = 8
    /// Most chunks of points the splat runs over: enough for 2 to 16 threads to share
    /// them evenly (a volume's lattice has 1–5 % as many vertices as points).
    static let maxSplatChunks = 64
    /// Largest magnitude of an elevated lattice coordinate; beyond it Int32 keys could
    /// overflow, so the build refuses (features spanning ~10⁸ bandwidths).
    static let coordinateLimit = Double(1 << 29)

    /// Builds the lattice for `count` points whose `dimension` features are stored point
    /// after point at `features` (already divided by the bandwidth).
    ///
    /// Throws `invalidArgument` for a non-finite feature or features spanning too many
    /// bandwidths for Int32 keys (`kernelName` names the kernel in the message), and
    /// `outOfMemory` when the tables cannot be allocated.
    /// `checkpoint` runs on the calling thread between blocks of the build and may throw
    /// (a cancellation) to stop it.
    public init(
        features: UnsafePointer<Float>, count: Int, dimension d: Int, kernelName: String, threads: Int,
        checkpoint: () throws -> Void = {}
    ) throws {
        guard (1...PermutohedralLattice.maxDimension).contains(d) else {
            throw LiversegError.invalidArgument(
                "\(kernelName): lattice dimension \(d) must be in 1...\(PermutohedralLattice.maxDimension)")
        }
        guard count >= 0, count <= Int(Int32.max) / (d + 2) else {
            throw LiversegError.invalidArgument(
                "\(kernelName): \(count) points are too many for one lattice (limit \(Int(Int32.max) / (d + 2)))")
        }
        dimension = d
        pointCount = count
        let n = count, d1 = d + 1

        // Shift features to start at 0 (the kernel only sees differences), which bounds the
        // elevated coordinates by the features' span; check that span against Int32 keys.
        var lowest = [Double](repeating: .infinity, count: d), highest = [Double](repeating: -.infinity, count: d)
        for c in 0..<d {
            // A non-finite feature makes `low` NaN for good (NaN fails every comparison),
            // so one check after the pass finds it and the loop has no early exit.
            var (low, high) = (Float.infinity, -Float.infinity)
            for first in stride(from: 0, to: n, by: 1 << 20) {
                for i in first..<min(n, first + 1 << 20) {
                    let v = features[i * d + c]
                    low = v < low ? v : low
                    high = v > high ? v : high
                    if !v.isFinite { low = .nan }
                }
                try checkpoint()
            }
            guard low.isFinite, high.isFinite else {
                let i = (0..<n).first { !features[$0 * d + c].isFinite } ?? 0
                throw LiversegError.invalidArgument("\(kernelName): feature \(c) of point \(i) is not finite")
            }
            (lowest[c], highest[c]) = (Double(low), Double(high))
        }
        // Scaling that makes the lattice's [1 2 1] blurs along d+1 directions approximate a
        // unit-variance Gaussian in feature units (Adams et al. 2010, §3.1).
        let invStdDev = (2.0 / 3.0).squareRoot() * Double(d1)
        let scale = (0..<d).map { invStdDev / (Double(($0 + 1) * ($0 + 2))).squareRoot() }
        var span = 0.0
        for c in 0..<d where n > 0 { span += (highest[c] - lowest[c]) * scale[c] }
        guard span * Double(d1) + Double(2 * d1) < PermutohedralLattice.coordinateLimit else {
            throw LiversegError.invalidArgument(
                "\(kernelName): the features span \(span) lattice units; the bandwidth θ is too small for this data range (Int32 lattice keys would overflow)"
            )
        }

        let shift = (0..<d).map { lowest[$0] * scale[$0] }
        let built: LatticeTables
        switch d {
        case 1:
            built = try LatticeBuilder<1>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        case 2:
            built = try LatticeBuilder<2>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        case 3:
            built = try LatticeBuilder<3>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        case 4:
            built = try LatticeBuilder<4>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        case 5:
            built = try LatticeBuilder<5>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        case 6:
            built = try LatticeBuilder<6>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        case 7:
            built = try LatticeBuilder<7>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        default:
            built = try LatticeBuilder<8>.build(
                features, count: n, scale: scale, shift: shift, kernelName: kernelName, threads: threads,
                checkpoint: checkpoint)
        }
        (pointVertex, pointWeight, neighbours, vertexCount) =
            (built.pointVertex, built.pointWeight, built.neighbours, built.vertexCount)
        splatChunks = max(1, min(Self.maxSplatChunks, count / max(1, 4 * vertexCount)))
    }

    /// Filters `channels` values per point (point after point at `input`) and writes the
    /// result in the same layout to `output`, which may alias `input`. `checkpoint` runs on
    /// the calling thread after the splat, each blur direction and the slice.
    public func filter(
        _ input: UnsafePointer<Float>, channels: Int, into output: UnsafeMutablePointer<Float>, threads: Int,
        checkpoint: () throws -> Void = {}
    ) throws {
        guard channels >= 1 else { throw LiversegError.invalidArgument("filter: channels \(channels) must be at least 1") }
        let needed = try checkedProduct([vertexCount + 1, channels], what: "lattice values")
        let chunkValues = try checkedProduct([splatChunks - 1, vertexCount, channels], what: "lattice splat values")
        let buffers: (a: Buffer<Float>, b: Buffer<Float>, chunks: Buffer<Float>)
        if let existing = scratch, existing.a.count >= needed {
            buffers = existing
        } else {
            buffers = (
                try Buffer(count: needed, zeroed: false), try Buffer(count: needed, zeroed: false),
                try Buffer(count: chunkValues, zeroed: false)
            )
            scratch = buffers
        }
        let (a, b, chunks) = (buffers.a.pointer, buffers.b.pointer, buffers.chunks.pointer)
        // One channel (the CRF's case) gets its own inlined copy with the channel loops
        // unrolled by the compiler.
        if channels == 1 {
            try run(input, channels: 1, into: output, a: a, b: b, chunks: chunks, threads: threads, checkpoint: checkpoint)
        } else {
            try run(
                input, channels: channels, into: output, a: a, b: b, chunks: chunks, threads: threads, checkpoint: checkpoint)
        }
    }

    /// Splat, blur and slice with vertex scratch `a` and `b` and the splat chunks' values
    /// `chunks`.
    @inline(__always)
    private func run(
        _ input: UnsafePointer<Float>, channels: Int, into output: UnsafeMutablePointer<Float>,
        a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, chunks: UnsafeMutablePointer<Float>,
        threads: Int, checkpoint: () throws -> Void
    ) throws {
        let d = dimension, d1 = d + 1, vertices = vertexCount, n = pointCount, parts = splatChunks
        nonisolated(unsafe) var a = a, b = b
        nonisolated(unsafe) let src = input, dst = output, partValues = chunks
        let nb = neighbours.pointer, pv = pointVertex.pointer, pw = pointWeight.pointer
        let sentinel = vertices * channels
        // Index arithmetic below wraps instead of trapping (&*, &+): every index is below
        // (vertices + 1) × channels or points × (d + 1), both checked to fit at the build,
        // and the overflow checks kept these loops from vectorising.

        // Splat: each chunk of points scatters into its own values (the first chunk into
        // `a`), in point order; then every vertex sums the chunks in chunk order.
        let vertexValues = vertices &* channels
        try parallelRounds(parts, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
            for part in range {
                let values = part == 0 ? a : partValues + (part &- 1) &* vertexValues
                values.update(repeating: 0, count: vertexValues)
                for i in (n * part / parts)..<(n * (part + 1) / parts) {
                    for k in 0..<d1 {
                        let w = pw[i &* d1 &+ k], out = values + Int(pv[i &* d1 &+ k]) &* channels
                        for c in 0..<channels { out[c] += w * src[i &* channels &+ c] }
                    }
                }
            }
        }
        if parts > 1 {
            try parallelRounds(vertexValues, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                for part in 1..<parts {
                    let values = partValues + (part &- 1) &* vertexValues
                    for e in range { a[e] += values[e] }
                }
            }
        }
        for c in 0..<channels { a[sentinel + c] = 0; b[sentinel + c] = 0 }
        try checkpoint()
        for j in 0...d {
            let (from, to) = (a, b)
            let pairs = nb + j * vertices * 2
            try parallelRounds(vertices, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                for v in range {
                    let n1 = from + Int(pairs[2 &* v]) &* channels, n2 = from + Int(pairs[2 &* v &+ 1]) &* channels
                    let own = from + v &* channels, out = to + v &* channels
                    for c in 0..<channels { out[c] = own[c] + 0.5 * (n1[c] + n2[c]) }
                }
            }
            swap(&a, &b)
            try checkpoint()
        }
        // Adams et al.'s normalisation of the [1 2 1]^(d+1) blur's mass.
        let alpha = Float(1 / (1 + pow(2.0, -Double(d))))
        let values = a
        try parallelRounds(n, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
            for i in range {
                for c in 0..<channels {
                    var sum: Float = 0
                    for k in 0..<d1 { sum += pw[i &* d1 &+ k] * values[Int(pv[i &* d1 &+ k]) &* channels &+ c] }
                    dst[i &* channels &+ c] = sum * alpha
                }
            }
        }
        try checkpoint()
    }
}

/// What a lattice build produces (the fields of `PermutohedralLattice` of the same names).
private struct LatticeTables {
    let pointVertex: Buffer<Int32>
    let pointWeight: Buffer<Float>
    let neighbours: Buffer<Int32>
    let vertexCount: Int
}

/// The lattice build for feature dimension D, a compile-time constant: the per-point loops
/// over coordinates unroll and their scratch stays in registers (with a run-time d they
/// were memory loops, and the build took about half of a CRF slice's time).
private enum LatticeBuilder<let D: Int> {
    /// Int32s between the workers' key scratch: a cache line each (D + 1 ≤ 9 fit), so that
    /// threads writing their keys do not invalidate each other's line.
    static var keyStride: Int { 16 }

    /// Builds the tables for `count` points with D features each at `features`; the
    /// lattice coordinate c of a point is features[c] · scale[c] − shift[c]. Four phases:
    /// each point's simplex, weights and vertices (`findVertices`); one numbering of the
    /// vertices (`numberVertices`); each vertex's blur neighbours (`findNeighbours`).
    static func build(
        _ features: UnsafePointer<Float>, count: Int, scale: [Double], shift: [Double],
        kernelName: String, threads: Int, checkpoint: () throws -> Void
    ) throws -> LatticeTables {
        let d1 = D + 1, n = count
        // A power of two, so shard-tagged vertex numbers (local · shards + shard) decode with
        // shifts; they must fit in Int32 too. One shard up to 2 threads: every shard scans
        // every point, and on 2 cores two shards built IRCADb-17's volume lattice in 4.0 s
        // against 3.4 s for one (the points' embedding and hashing, split over the threads
        // either way, session 10). More threads shard as before (not measured here).
        var shards = 1
        while threads > 2, 2 * shards <= min(threads, 64), 2 * shards * max(1, n * d1) <= Int(Int32.max) { shards *= 2 }
        let pointVertex = try Buffer<Int32>(count: n * d1, zeroed: false)
        let pointWeight = try Buffer<Float>(count: n * d1, zeroed: false)
        let (tables, sameAsPrevious) = try findVertices(
            features, count: n, scale: scale, shift: shift, shards: shards, threads: threads, pointVertex: pointVertex,
            pointWeight: pointWeight, checkpoint: checkpoint)
        let (vertices, shardOffsets, allKeys) = try numberVertices(
            tables, count: n, shards: shards, pointVertex: pointVertex, sameAsPrevious: sameAsPrevious)
        Log.write(.debug, "\(kernelName): lattice d=\(D), \(n) points, \(vertices) vertices, \(shards) shard(s)")
        let neighbours = try findNeighbours(
            vertices: vertices, keys: allKeys, tables: tables, shardOffsets: shardOffsets, shards: shards,
            checkpoint: checkpoint)
        return LatticeTables(
            pointVertex: pointVertex, pointWeight: pointWeight, neighbours: neighbours, vertexCount: vertices)
    }

    /// Each point's enclosing simplex, barycentric weights (into `pointWeight`) and simplex
    /// vertices (into `pointVertex`, as shard-tagged numbers local · shards + shard, or left
    /// to its predecessor's where `sameAsPrevious` is set). Returns each shard's vertex table.
    private static func findVertices(
        _ features: UnsafePointer<Float>, count n: Int, scale: [Double], shift: [Double], shards: Int, threads: Int,
        pointVertex: Buffer<Int32>, pointWeight: Buffer<Float>, checkpoint: () throws -> Void
    ) throws -> (tables: [VertexTable<D>], sameAsPrevious: Buffer<UInt8>) {
        let d = D, d1 = D + 1
        // Vertices are found in blocks of points, in two parallel phases per block:
        //  1. each point's enclosing simplex (remainder-0 point, ranks), barycentric
        //     weights and its vertices' hashes, split over the points;
        //  2. the simplex vertices' lookup, split over hash shards: shard s inserts only the
        //     keys whose hash falls in s, into its own table, scanning points in order.
        // Vertex numbers then depend on the shard count, but no result does: every sum over
        // a vertex's points is still taken in point order.
        // Tables start small and double as they fill: a volume's lattice has 1–5 % as many
        // vertices as points, and sizing them from the points cost 13 bytes per point.
        let expected = max(16, min(n / (4 * shards), 1 << 16))
        var tables = try (0..<shards).map { _ in try VertexTable<D>(expectedVertices: expected) }
        let block = max(1, min(n, 1 << 15))
        // The simplex of each point of the block; slot 0 holds the previous block's last.
        let blockRem0 = try Buffer<Int32>(count: (block + 1) * d1)
        let blockRank = try filledBuffer(Int32(-1), count: (block + 1) * d1)
        // Points whose simplex is their predecessor's (often, for neighbouring points).
        let sameAsPrevious = try Buffer<UInt8>(count: max(n, 1))
        // The hash of each simplex vertex of the block's points.
        let blockHash = try Buffer<Int>(count: block * d1, zeroed: false)
        // With several shards, each writes the vertices it finds here, apart from the others:
        // written straight into `pointVertex`, the shards' interleaved writes to the same
        // cache lines made two shards slower than one.
        let blockShardVertex = try Buffer<Int32>(count: shards > 1 ? shards * block * d1 : 0, zeroed: false)
        let keyScratch = try Buffer<Int32>(count: max(shards, threads) * keyStride, zeroed: false)
        // Per shard, the vertices looked up last, direct-mapped by hash (slots of d+1 Int32:
        // the vertex, −1 when empty, then its key): neighbouring points share most vertices,
        // and this small table stays in cache where a volume's vertex table (tens of MB)
        // does not.
        let recentEntries = 1 << 14
        let recentTable = try filledBuffer(Int32(-1), count: shards * recentEntries * d1)
        var failures = [LiversegError?](repeating: nil, count: shards)
        nonisolated(unsafe) let bRem0 = blockRem0.pointer, bRank = blockRank.pointer, same = sameAsPrevious.pointer
        nonisolated(unsafe) let keys = keyScratch.pointer, recent = recentTable.pointer, bHash = blockHash.pointer
        nonisolated(unsafe) let shardVertex = blockShardVertex.pointer
        nonisolated(unsafe) let vertexOut = pointVertex.pointer, weightOut = pointWeight.pointer
        nonisolated(unsafe) let featureIn = features
        for first in stride(from: 0, to: n, by: block) {
            let m = min(block, n - first)
            parallelChunks(m, threads: threads) { worker, range in
                // In C (CKernels), where the loop over points vectorises: in Swift, one
                // point at a time, this was a third of a CRF slice's time.
                ckernels_lattice_embed(
                    Int32(d), featureIn + (first + range.lowerBound) * d, range.count, scale, shift,
                    bRem0 + (range.lowerBound + 1) * d1, bRank + (range.lowerBound + 1) * d1,
                    weightOut + (first + range.lowerBound) * d1)
                // The vertices' hashes, here where each point is hashed once: in the shard
                // phase every shard would hash every key. Points whose simplex repeats the
                // previous point's of the chunk are skipped (the shard phase skips them too).
                let key = keys + worker * keyStride
                for local in range {
                    let r0 = bRem0 + (local + 1) * d1, rk = bRank + (local + 1) * d1
                    if local > range.lowerBound {
                        var repeated = true
                        for c in 0...d where r0[c] != r0[c - d1] || rk[c] != rk[c - d1] { repeated = false; break }
                        if repeated { continue }
                    }
                    for k in 0...d {
                        for c in 0..<d { key[c] = r0[c] + Int32(rk[c] <= d - k ? k : k - d1) }
                        bHash[local * d1 + k] = VertexTable<D>.hash(key)
                    }
                }
            }
            tables.withUnsafeMutableBufferPointer { tp in
                failures.withUnsafeMutableBufferPointer { fp in
                    nonisolated(unsafe) let (tp, fp) = (tp, fp)
                    parallelChunks(shards, threads: shards) { shard, _ in
                        let key = keys + shard * keyStride
                        for local in 0..<m {
                            let i = first + local
                            let r0 = bRem0 + (local + 1) * d1, rk = bRank + (local + 1) * d1
                            var repeated = true
                            for c in 0...d where r0[c] != r0[c - d1] || rk[c] != rk[c - d1] { repeated = false; break }
                            if repeated {
                                if shard == 0 { same[i] = 1 }
                                continue
                            }
                            for k in 0...d {
                                let h = bHash[local * d1 + k]
                                guard VertexTable<D>.shard(of: h, shards: shards) == shard else { continue }
                                for c in 0..<d { key[c] = r0[c] + Int32(rk[c] <= d - k ? k : k - d1) }
                                do {
                                    let entry = recent + (shard * recentEntries + h & (recentEntries - 1)) * d1
                                    var hit = entry[0] >= 0
                                    if hit { for c in 0..<d where entry[c + 1] != key[c] { hit = false; break } }
                                    let v = hit ? entry[0] : try tp[shard].findOrInsert(key, hash: h)
                                    if !hit {
                                        entry[0] = v
                                        for c in 0..<d { entry[c + 1] = key[c] }
                                    }
                                    let tagged = v &* Int32(shards) &+ Int32(shard)
                                    if shards == 1 {
                                        vertexOut[i * d1 + k] = tagged
                                    } else {
                                        shardVertex[(shard * block + local) * d1 + k] = tagged
                                    }
                                } catch let error as LiversegError {
                                    fp[shard] = error
                                    return
                                } catch {
                                    fp[shard] = .internalError("lattice: \(error)")
                                    return
                                }
                            }
                        }
                    }
                }
            }
            if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
            if shards > 1 {
                // Each point's vertices, from the shards that found them.
                parallelChunks(m, threads: shards) { _, range in
                    for local in range where same[first + local] == 0 {
                        for k in 0...d {
                            let owner = VertexTable<D>.shard(of: bHash[local * d1 + k], shards: shards)
                            vertexOut[(first + local) * d1 + k] = shardVertex[(owner * block + local) * d1 + k]
                        }
                    }
                }
            }
            (bRem0).update(from: bRem0 + m * d1, count: d1)
            (bRank).update(from: bRank + m * d1, count: d1)
            try checkpoint()
        }
        return (tables, sameAsPrevious)
    }

    /// Numbers the vertices shard after shard, turns `pointVertex`'s shard-tagged numbers
    /// into those, and resolves the repeated simplices in point order. Returns the vertex
    /// count, each shard's first number and every vertex's key (d coordinates each).
    private static func numberVertices(
        _ tables: [VertexTable<D>], count n: Int, shards: Int, pointVertex: Buffer<Int32>, sameAsPrevious: Buffer<UInt8>
    ) throws -> (vertices: Int, shardOffsets: [Int], keys: Buffer<Int32>) {
        let d = D, d1 = D + 1
        let shardBits = shards.trailingZeroBitCount
        nonisolated(unsafe) let vertexOut = pointVertex.pointer, same = sameAsPrevious.pointer
        var offsets = [Int](repeating: 0, count: shards + 1)
        for s in 0..<shards { offsets[s + 1] = offsets[s] + tables[s].count }
        let vertices = offsets[shards]
        let shardOffsets = offsets
        if shards > 1 {
            parallelChunks(n, threads: shards) { _, range in
                for i in range where same[i] == 0 {
                    for e in (i * d1)..<(i * d1 + d1) {
                        let x = Int(vertexOut[e])
                        vertexOut[e] = Int32(shardOffsets[x & (shards - 1)] + x >> shardBits)
                    }
                }
            }
        }
        for i in 0..<n where same[i] != 0 {
            for e in (i * d1)..<(i * d1 + d1) { vertexOut[e] = vertexOut[e - d1] }
        }
        let allKeys = try Buffer<Int32>(count: vertices * d, zeroed: false)
        for s in 0..<shards {
            (allKeys.pointer + offsets[s] * d).update(from: tables[s].keys.pointer, count: tables[s].count * d)
        }
        return (vertices, shardOffsets, allKeys)
    }

    /// For each vertex and blur direction j, the −step and +step neighbours (the sentinel
    /// `vertices` where there is none).
    private static func findNeighbours(
        vertices: Int, keys allKeys: Buffer<Int32>, tables: [VertexTable<D>], shardOffsets: [Int], shards: Int,
        checkpoint: () throws -> Void
    ) throws -> Buffer<Int32> {
        let d = D, d1 = D + 1
        // Blur neighbours along direction j: the lattice step is +1 in every coordinate
        // except −d in coordinate j (for j = d, the coordinate left out of the key); a
        // missing neighbour is the sentinel. Look up only the −step neighbour u of each v:
        // then v is u's +step neighbour. Each (direction, u) has one such v, so the
        // parallel writes never collide.
        let neighbours = try Buffer<Int32>(count: vertices * d1 * 2, zeroed: false)
        neighbours.pointer.initialize(repeating: Int32(vertices), count: vertices * d1 * 2)
        nonisolated(unsafe) let keyOf = allKeys.pointer, nb = neighbours.pointer
        let lookup = tables
        let keyScratch = try Buffer<Int32>(count: shards * keyStride, zeroed: false)
        nonisolated(unsafe) let keys = keyScratch.pointer
        try parallelRounds(vertices, threads: shards, checkpoint: { _ in try checkpoint() }) { worker, range in
            let p = keys + worker * keyStride
            for v in range {
                let own = keyOf + v * d
                for j in 0...d {
                    for c in 0..<d { p[c] = own[c] &- 1 }
                    if j < d { p[j] = own[j] &+ Int32(d) }
                    let h = VertexTable<D>.hash(p)
                    let s = VertexTable<D>.shard(of: h, shards: shards)
                    let local = lookup[s].find(p, hash: h)
                    if local >= 0 {
                        let u = Int32(shardOffsets[s]) + local
                        nb[(j * vertices + v) * 2] = u
                        nb[(j * vertices + Int(u)) * 2 + 1] = Int32(v)
                    }
                }
            }
        }
        return neighbours
    }
}

/// Open-addressing hash table from lattice keys (d Int32 coordinates) to vertex indices.
/// Each slot holds the vertex index and a copy of its key, so a probe touches one cache
/// line. It starts sized from the number of points and doubles when three quarters full, so it never
/// overflows; vertex indices are Int32 because points × (d+1) is checked to fit.
private struct VertexTable<let D: Int> {
    /// Keys of vertices 0..<count, d coordinates each.
    var keys: Buffer<Int32>
    /// Slots of d+1 Int32: the vertex index (−1 when empty), then its key. The slot count
    /// is a power of two.
    var slots: Buffer<Int32>
    private(set) var count = 0
    private var mask: Int

    init(expectedVertices: Int) throws {
        var capacity = 16
        while 3 * capacity < 4 * expectedVertices { capacity <<= 1 }
        keys = try Buffer(count: expectedVertices * D, zeroed: false)
        slots = try filledBuffer(-1, count: capacity * (D + 1))
        mask = capacity - 1
    }

    /// The key's hash; its low bits pick the table slot, its high bits the shard. A vertex
    /// key's coordinates are all congruent modulo d+1: key_c = (d+1)·q_c + r. The low bits
    /// hold r unmixed, above a mix of the lattice cell q, so the vertices of one cell share
    /// a cache line of the table and probes rarely go past it. (Passing the low 2 bits of
    /// each coordinate through unmixed would not do: for d = 3 those are all r, so most
    /// slots would never be a key's home and probe runs would be long.)
    @inline(__always)
    static func hash(_ key: UnsafePointer<Int32>) -> Int {
        // Bits to hold 0...D, and a multiple of d+1 that makes every coordinate positive
        // (|key| < 2^30, checked at the build).
        let classBits = Int.bitWidth - D.leadingZeroBitCount, offset = (D + 1) << 32
        var h: UInt64 = 0
        var remainder = 0
        for c in 0..<D {
            let u = Int(key[c]) + offset, q = u / (D + 1)
            if c == 0 { remainder = u - q * (D + 1) }
            h = (h ^ UInt64(q)) &* 0x9E37_79B9_7F4A_7C15
        }
        h = (h ^ (h >> 32)) &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 32
        return Int(truncatingIfNeeded: h << UInt64(classBits)) | remainder
    }

    /// Which of `shards` (a power of two) tables holds keys with this hash.
    @inline(__always)
    static func shard(of hash: Int, shards: Int) -> Int { Int(UInt(bitPattern: hash) >> 48) & (shards - 1) }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func slot(of key: UnsafePointer<Int32>, hash: Int) -> UnsafeMutablePointer<Int32> {
        let stride = D + 1, table = slots.pointer
        var s = hash & mask
        while true {
            let entry = table + s * stride
            if entry[0] < 0 { return entry }
            var same = true
            for c in 0..<D where entry[c + 1] != key[c] { same = false; break }
            if same { return entry }
            s = (s + 1) & mask
        }
    }

    /// The vertex with this key, or −1.
    func find(_ key: UnsafePointer<Int32>, hash: Int) -> Int32 { slot(of: key, hash: hash)[0] }

    /// The vertex with this key, inserting a new one if absent.
    @inline(__always)
    mutating func findOrInsert(_ key: UnsafePointer<Int32>, hash: Int) throws -> Int32 {
        let entry = slot(of: key, hash: hash)
        return entry[0] >= 0 ? entry[0] : try insert(key, into: entry)
    }

    /// Adds `key` as a new vertex in the empty slot `entry`.
    @inline(never)
    private mutating func insert(_ key: UnsafePointer<Int32>, into entry: UnsafeMutablePointer<Int32>) throws -> Int32 {
        if (count + 1) * D > keys.count {
            let grown = try Buffer<Int32>(count: 2 * keys.count + D, zeroed: false)
            grown.pointer.update(from: keys.pointer, count: count * D)
            keys = grown
        }
        (keys.pointer + count * D).update(from: key, count: D)
        entry[0] = Int32(count)
        (entry + 1).update(from: key, count: D)
        count += 1
        if 4 * count > 3 * (mask + 1) { try rehash(capacity: 2 * (mask + 1)) }
        return Int32(count - 1)
    }

    private mutating func rehash(capacity: Int) throws {
        slots = try filledBuffer(-1, count: capacity * (D + 1))
        mask = capacity - 1
        for v in 0..<count {
            let key = keys.pointer + v * D
            let entry = slot(of: key, hash: VertexTable.hash(key))
            entry[0] = Int32(v)
            (entry + 1).update(from: key, count: D)
        }
    }
}
