#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport

/// The overlap-save geometry of an FFT convolution over one grid: each block of `block`
/// (FFT extents) yields block − kernel + 1 outputs per axis.
struct FFTBlocking: Equatable {
    /// FFT extents of a block.
    let block: GridSize
    /// Kernel extents.
    let kernel: GridSize
    /// The convolution's grid.
    let grid: GridSize

    /// Outputs per block along each axis.
    var valid: GridSize { GridSize(x: block.x - kernel.x + 1, y: block.y - kernel.y + 1, z: block.z - kernel.z + 1) }
    /// Blocks along each axis.
    var counts: GridSize {
        let v = valid
        return GridSize(x: (grid.x + v.x - 1) / v.x, y: (grid.y + v.y - 1) / v.y, z: (grid.z + v.z - 1) / v.z)
    }
    /// Blocks whose channel sums share one pass over the kernel spectra: 4 when the kernel
    /// spectra (Cin·Cout per block) outweigh the block's own (Cin + Cout) 8 times or more,
    /// else 1. Sharing saves kernel traffic but keeps 4 blocks' spectra in cache at once;
    /// measured on the paper layers (1 thread, AVX-512): conv5 (16→32, ratio 10.7) 0.150 →
    /// 0.110 s grouped, conv2 and conv4 (ratios 4 and 5.3) 10–20 % slower grouped.
    static func blocksPerKernelPass(inChannels: Int, outChannels: Int) -> Int {
        inChannels * outChannels >= 8 * (inChannels + outChannels) ? 4 : 1
    }
    /// Blocks whose spectra the weight gradient adds to its accumulators in one pass over
    /// them. Each pass reads and writes every accumulator (Cin·Cout spectra) and reads the
    /// blocks' own (Cin + Cout each): grouping pays once the accumulators outweigh one
    /// block's spectra, and then all blocks share a pass, up to `gradientSpectraBytesLimit`.
    /// The accumulation alone (a C harness, AVX2 EPYC, 1 thread, the blocks of a 64×64×48
    /// training patch's layers), one block per pass → all in one: conv2 (8→8, 24 blocks)
    /// 0.051 → 0.026 s, conv5 (16→32, 16 blocks) 0.030 → 0.016 s, conv4 (8→16) 0.0039 →
    /// 0.0031 s; conv1 (1→8: 9 spectra per block against 8 accumulators) 0.0008 → 0.0020 s,
    /// so it keeps one block per pass.
    static func blocksPerGradientPass(inChannels: Int, outChannels: Int, blockCount: Int, blockSpectrumBytes: Int) -> Int {
        guard inChannels * outChannels > inChannels + outChannels else { return 1 }
        let fit = gradientSpectraBytesLimit / max(1, (inChannels + outChannels) * blockSpectrumBytes)
        return max(1, min(blockCount, fit))
    }
    /// Largest store of block spectra the weight gradient keeps for one pass.
    static let gradientSpectraBytesLimit = 64 << 20
    /// Complex frequencies the weight gradient sums for all channel pairs before moving on (a
    /// multiple of every clone's vector length). With all blocks in one pass, 128 against the
    /// whole spectrum at once: conv5 0.021 → 0.016 s, conv2 0.031 → 0.026 s (64, 256 and 512
    /// within 5 % of 128).
    static let gradientFrequencyChunk = 128
    /// Number of blocks.
    var blockCount: Int { counts.voxelCount }

    /// First output voxel of block `index` (x fastest).
    func origin(_ index: Int) -> GridSize {
        let c = counts, v = valid
        return GridSize(x: index % c.x * v.x, y: index / c.x % c.y * v.y, z: index / (c.x * c.y) * v.z)
    }

    /// Outputs of the block at `origin` inside the grid.
    func extent(at origin: GridSize) -> GridSize {
        let v = valid
        return GridSize(x: min(v.x, grid.x - origin.x), y: min(v.y, grid.y - origin.y), z: min(v.z, grid.z - origin.z))
    }
}

/// Time estimates of the two algorithms: they only need to rank the choices. Rates fitted to
/// the paper network's layers on 160×160×72 (one thread, AMD EPYC with AVX-512, busy machine):
/// im2col 0.09–2.97 s per layer, FFT 0.09–0.56 s, each model within 1.5× of the measurement.
/// Since the channel sums and butterflies moved to CKernels (session 7) the FFT measures
/// 0.025–0.256 s on those layers, 2–3.6× under its model: the ranking (FFT for all five large
/// layers) holds, but the block sizes were chosen with the older rates.
enum ConvolutionCostModel {
    /// im2col + sgemm on the paper layers.
    static let im2colRate = 45e9
    /// The x transforms: thin GEMMs with the DFT matrix.
    static let dftRate = 35e9
    /// The y and z butterflies.
    static let butterflyRate = 8e9
    /// The per-frequency channel sums (streaming, partly memory-bound).
    static let mixRate = 6e9
    /// Largest kernel-spectrum (and weight-gradient accumulator) store per layer and block size.
    static let spectrumBytesLimit = 256 << 20
    /// Largest FFT extent per axis.
    static let maximumExtent = 128

    /// Seconds of one im2col forward pass.
    static func im2col(cin: Int, cout: Int, kernel: GridSize, grid: GridSize) -> Double {
        2 * Double(cin * cout * kernel.voxelCount * grid.voxelCount) / im2colRate
    }

    /// Seconds of one FFT forward pass with `blocking`, kernel spectra included.
    static func fft(_ blocking: FFTBlocking, cin: Int, cout: Int) -> Double {
        let b = blocking.block, nc = Double(b.x / 2 + 1), rows = Double(b.y * b.z)
        let complex = rows * nc
        let transform =
            4 * rows * Double(b.x) * nc / dftRate
            + 5 * complex * (log2(Double(b.y)) + log2(Double(b.z))) / butterflyRate
        let mix = 8 * Double(cin * cout) * complex / mixRate
        return Double(blocking.blockCount) * (Double(cin + cout) * transform + mix) + Double(cin * cout) * transform
    }

    /// The cheapest blocking whose spectra fit the memory limit: y and z extents powers of
    /// two, x any extent (its DFT is a matrix product), none beyond what one block covers.
    static func bestBlocking(cin: Int, cout: Int, kernel: GridSize, grid: GridSize, scalarBytes: Int) -> FFTBlocking? {
        func powersOfTwo(_ k: Int, _ s: Int) -> [Int] {
            var n = 1, result: [Int] = []
            while n < k { n *= 2 }
            while n <= maximumExtent {
                result.append(n)
                if n >= s + k - 1 { break }
                n *= 2
            }
            return result
        }
        let xs = Array(
            Set(
                powersOfTwo(kernel.x, grid.x)
                    + (kernel.x...min(maximumExtent, grid.x + kernel.x - 1)).filter { $0 % 8 == 0 || $0 == grid.x + kernel.x - 1 }
            ))
        var best: (cost: Double, blocking: FFTBlocking)?
        for nz in powersOfTwo(kernel.z, grid.z) {
            for ny in powersOfTwo(kernel.y, grid.y) {
                for nx in xs.sorted() {
                    let blocking = FFTBlocking(block: GridSize(x: nx, y: ny, z: nz), kernel: kernel, grid: grid)
                    let bytes = cin * cout * 2 * nz * ny * (nx / 2 + 1) * scalarBytes
                    guard bytes <= spectrumBytesLimit else { continue }
                    let cost = fft(blocking, cin: cin, cout: cout)
                    if best == nil || cost < best!.cost { best = (cost, blocking) }
                }
            }
        }
        return best?.blocking
    }
}

/// Kernel spectra of one layer per block size, computed on first use. A loaded model serves
/// concurrent calls, so the cache is locked; a few block sizes are kept (tiles of different
/// sizes may choose different blocks), the oldest dropped first.
final class KernelSpectrumCache<Scalar: NetworkScalar>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var entries: [(plan: SpectralPlan<Scalar>, spectra: Buffer<Scalar>)] = []
    private static var capacity: Int { 4 }

    init() { pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }

    /// The plan and spectra for `block`, made by `make` when missing.
    func entry(
        _ block: GridSize, make: () throws -> (SpectralPlan<Scalar>, Buffer<Scalar>)
    )
        rethrows -> (plan: SpectralPlan<Scalar>, spectra: Buffer<Scalar>)
    {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        if let hit = entries.first(where: { $0.plan.size == block }) { return hit }
        let made = try make()
        if entries.count == Self.capacity { entries.removeFirst() }
        entries.append(made)
        return made
    }
}

/// The variable that overrides every layer's cost-model choice: "im2colGEMM" or "fft".
public let convolutionAlgorithmVariable = "LIVERSEG_CONV_ALGORITHM"

extension Convolution3D {
    /// The algorithm used over a grid of `size`: `algorithm` when set, else the one named by
    /// LIVERSEG_CONV_ALGORITHM, else the faster by the cost model. 1×1×1 kernels and layers
    /// whose spectra would not fit in memory use im2colGEMM. A function of shapes only, so
    /// results do not depend on the thread count.
    public func chosenAlgorithm(over size: GridSize) -> ConvolutionAlgorithm {
        fftBlockingIfChosen(over: size) == nil ? .im2colGEMM : .fft
    }

    /// The blocking of the FFT algorithm when it is the one chosen over `size`, else nil.
    func fftBlockingIfChosen(over size: GridSize) -> FFTBlocking? {
        var forced = algorithm
        if forced == nil, let name = getenv(convolutionAlgorithmVariable) {
            forced = ConvolutionAlgorithm(rawValue: String(cString: name))
        }
        guard forced != .im2colGEMM, kernel.voxelCount > 1,
            let blocking = ConvolutionCostModel.bestBlocking(
                cin: inChannels, cout: outChannels, kernel: kernel, grid: size,
                scalarBytes: MemoryLayout<Scalar>.size)
        else { return nil }
        if forced == .fft { return blocking }
        let fft = ConvolutionCostModel.fft(blocking, cin: inChannels, cout: outChannels)
        return fft < ConvolutionCostModel.im2col(cin: inChannels, cout: outChannels, kernel: kernel, grid: size) ? blocking : nil
    }

    private var radius: GridSize { GridSize(x: kernel.x / 2, y: kernel.y / 2, z: kernel.z / 2) }

    /// Spectra of every kernel, [Cout][Cin] split half spectra of the zero-padded kernel
    /// (taps at the block's origin), divided by the block's voxel count so that the
    /// unnormalised inverse transform returns the convolution itself.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    private func kernelSpectra(_ block: GridSize, threads: Int) throws -> (plan: SpectralPlan<Scalar>, spectra: Buffer<Scalar>) {
        try spectrumCache.entry(block) {
            let plan = SpectralPlan<Scalar>(size: block)
            let count = plan.spectrumCount, pairs = outChannels * inChannels
            let spectra = try Buffer<Scalar>(count: pairs * count, zeroed: false)
            let workers = min(max(1, threads), pairs)
            let tiles = try Buffer<Scalar>(count: workers * block.voxelCount, zeroed: false)
            let scale = 1 / Scalar(block.voxelCount)
            weight.withUnsafeBufferPointer { w in
                nonisolated(unsafe) let w = w.baseAddress!
                parallelChunks(pairs, threads: workers) { worker, range in
                    let tile = tiles.pointer + worker * block.voxelCount
                    for pair in range {
                        gatherBlock(
                            w + pair * kernel.voxelCount, grid: kernel, origin: GridSize(x: 0, y: 0, z: 0),
                            limit: kernel, into: tile, block: block)
                        let s = spectra.pointer + pair * count
                        plan.forward(tile, s)
                        for i in 0..<count { s[i] *= scale }
                    }
                }
            }
            return (plan, spectra)
        }
    }

    /// Overlap-save over the blocks of `blocking`, each block on one thread (outputs are
    /// disjoint, so results do not depend on the thread count): the source channels'
    /// spectra, their channel sums with the kernel spectra, the inverse transforms of the
    /// block's valid outputs.
    /// Forward (adjoint false): source X [Cin], destination Y [Cout] with bias and ReLU;
    /// Y[co] = Σ_ci conj(K[co, ci])·X[ci] (a correlation), outputs at block offset 0.
    /// Input gradient (adjoint true): source dZ [Cout], destination dX [Cin];
    /// dX[ci] = Σ_co K[co, ci]·dZ[co] (a convolution), outputs at block offset kernel − 1.
    /// Both read the source block from output origin − kernel radius. `progress` gets the
    /// fraction of blocks done between rounds of work (it may throw to stop).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func overlapSave(
        _ source: Tensor<Scalar>, into destination: Tensor<Scalar>, adjoint: Bool,
        blocking: FFTBlocking, threads: Int, progress: (Double) throws -> Void = { _ in }
    ) throws {
        let (plan, kernels) = try kernelSpectra(blocking.block, threads: threads)
        let (sourceChannels, destinationChannels) = adjoint ? (outChannels, inChannels) : (inChannels, outChannels)
        let count = plan.spectrumCount, complex = plan.complexCount, block = blocking.block, grid = blocking.grid
        // Blocks transformed together, so that each kernel spectrum, read from memory, serves
        // all of them while it is in registers.
        let group = FFTBlocking.blocksPerKernelPass(inChannels: inChannels, outChannels: outChannels)
        let groups = (blocking.blockCount + group - 1) / group
        let workers = min(max(1, threads), groups)
        Log.write(
            .debug,
            "FFT convolution \(sourceChannels)→\(destinationChannels) over \(grid): \(blocking.blockCount) block(s) of \(block), groups of \(group), \(workers) worker(s)"
        )
        let tiles = try Buffer<Scalar>(count: workers * block.voxelCount, zeroed: false)
        let sourceSpectra = try Buffer<Scalar>(count: workers * group * sourceChannels * count, zeroed: false)
        let destinationSpectra = try Buffer<Scalar>(count: workers * group * destinationChannels * count, zeroed: false)
        let r = radius
        let offset = adjoint ? GridSize(x: kernel.x - 1, y: kernel.y - 1, z: kernel.z - 1) : GridSize(x: 0, y: 0, z: 0)
        // Frequencies per pass of the channel sums: the group's source chunks and one
        // destination chunk stay in cache (a multiple of 64 so the vector loops have no tail).
        let chunk = max(
            64, min(complex, (128 << 10) / (MemoryLayout<Scalar>.size * 2 * group * (sourceChannels + 1))) / 64 * 64)
        try parallelRounds(groups, threads: workers, checkpoint: progress) { worker, range in
            let tile = tiles.pointer + worker * block.voxelCount
            let from = sourceSpectra.pointer + worker * group * sourceChannels * count
            let to = destinationSpectra.pointer + worker * group * destinationChannels * count
            for g in range {
                let members = (g * group)..<min(blocking.blockCount, (g + 1) * group)
                // Spectra [member][channel] of the group's source blocks.
                for (m, b) in members.enumerated() {
                    let o = blocking.origin(b)
                    for c in 0..<sourceChannels {
                        gatherBlock(
                            source.channel(c), grid: grid, origin: GridSize(x: o.x - r.x, y: o.y - r.y, z: o.z - r.z),
                            limit: block, into: tile, block: block)
                        plan.forward(tile, from + (m * sourceChannels + c) * count)
                    }
                }
                for low in stride(from: 0, to: complex, by: chunk) {
                    let n = min(chunk, complex - low)
                    for d in 0..<destinationChannels {
                        // Kernel spectra of the pairs (d, s) for s = 0, 1, … lie `kSource` apart.
                        let (firstPair, kSource) = adjoint ? (d, inChannels * count) : (d * inChannels, count)
                        Scalar.spectralMix(
                            to + d * count + low, yMember: destinationChannels * count,
                            kernels.pointer + firstPair * count + low, kSource: kSource, from + low,
                            xMember: sourceChannels * count, xSource: count, members: members.count,
                            sources: sourceChannels, count: n, stride: complex, conjugateK: !adjoint, accumulate: false)
                    }
                }
                for (m, b) in members.enumerated() {
                    let o = blocking.origin(b), extent = blocking.extent(at: o)
                    for d in 0..<destinationChannels {
                        let out = destination.channel(d) + (o.z * grid.y + o.y) * grid.x + o.x
                        plan.inverse(
                            to + (m * destinationChannels + d) * count, planesZ: offset.z..<(offset.z + extent.z),
                            rowsY: offset.y..<(offset.y + extent.y), columns: offset.x..<(offset.x + extent.x), into: out,
                            planeStride: grid.y * grid.x, rowStride: grid.x)
                        if !adjoint {
                            for z in 0..<extent.z {
                                for y in 0..<extent.y {
                                    addBias(bias[d], relu: relu, to: out + (z * grid.y + y) * grid.x, count: extent.x)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// dW[co, ci, d] = Σ_p dZ[co, p]·X[ci, p + d − radius], per block a circular correlation
    /// of the block's dZ (zero beyond its valid outputs) with the X block around it:
    /// conj(G[co])·X[ci], accumulated over blocks in the frequency domain and transformed back
    /// once per channel pair. Blocks are added in order, one at a time (several per pass over
    /// the accumulators, `FFTBlocking.blocksPerGradientPass`), each pair's accumulator by one
    /// thread, so the result depends neither on the thread count nor on the grouping.
    /// `blocksPerPass` overrides that rule (tests: the grouping must not change the bits).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func fftWeightGradient(
        _ input: Tensor<Scalar>, _ dZ: Tensor<Scalar>, blocking: FFTBlocking, threads: Int, blocksPerPass: Int? = nil
    ) throws -> [Scalar] {
        let block = blocking.block, grid = blocking.grid, r = radius
        let plan = SpectralPlan<Scalar>(size: block)
        let count = plan.spectrumCount, complex = plan.complexCount, channels = inChannels + outChannels
        let group = max(
            1,
            blocksPerPass
                ?? FFTBlocking.blocksPerGradientPass(
                    inChannels: inChannels, outChannels: outChannels, blockCount: blocking.blockCount,
                    blockSpectrumBytes: count * MemoryLayout<Scalar>.size))
        let accumulators = try Buffer<Scalar>(count: outChannels * inChannels * count, zeroed: true)
        // Spectra [block of the pass][X channels..., dZ channels...].
        let spectra = try Buffer<Scalar>(count: group * channels * count, zeroed: false)
        let workers = min(max(1, threads), group * channels)
        let tiles = try Buffer<Scalar>(count: workers * block.voxelCount, zeroed: false)
        for first in stride(from: 0, to: blocking.blockCount, by: group) {
            let blocks = min(group, blocking.blockCount - first)
            parallelChunks(blocks * channels, threads: workers) { worker, range in
                let tile = tiles.pointer + worker * block.voxelCount
                for j in range {
                    let (member, c) = j.quotientAndRemainder(dividingBy: channels)
                    let o = blocking.origin(first + member)
                    if c < inChannels {
                        gatherBlock(
                            input.channel(c), grid: grid, origin: GridSize(x: o.x - r.x, y: o.y - r.y, z: o.z - r.z),
                            limit: block, into: tile, block: block)
                    } else {
                        gatherBlock(
                            dZ.channel(c - inChannels), grid: grid, origin: o, limit: blocking.valid, into: tile, block: block)
                    }
                    plan.forward(tile, spectra.pointer + j * count)
                }
            }
            // Frequency chunk by chunk, every output channel, so that a chunk of the pass's
            // spectra stays in cache while all pairs use it; threads take disjoint chunks.
            let chunk = FFTBlocking.gradientFrequencyChunk, chunks = (complex + chunk - 1) / chunk
            parallelChunks(chunks, threads: threads) { _, range in
                for low in stride(from: range.lowerBound * chunk, to: min(complex, range.upperBound * chunk), by: chunk) {
                    for co in 0..<outChannels {
                        // Members: the input channels ci; sources: the pass's blocks, each
                        // adding conj(G[co])·X[ci] to (co, ci) in turn.
                        Scalar.spectralMix(
                            accumulators.pointer + co * inChannels * count + low, yMember: count,
                            spectra.pointer + (inChannels + co) * count + low, kSource: channels * count,
                            spectra.pointer + low, xMember: count, xSource: channels * count, members: inChannels,
                            sources: blocks, count: min(chunk, complex - low), stride: complex, conjugateK: true,
                            accumulate: true)
                    }
                }
            }
        }
        let taps = kernel.voxelCount, scale = 1 / Scalar(block.voxelCount)
        var result = [Scalar](repeating: 0, count: outChannels * inChannels * taps)
        result.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out.baseAddress!
            parallelFor(outChannels * inChannels, threads: threads) { pair in
                let dst = out + pair * taps
                plan.inverse(
                    accumulators.pointer + pair * count, planesZ: 0..<kernel.z, rowsY: 0..<kernel.y,
                    columns: 0..<kernel.x, into: dst, planeStride: kernel.y * kernel.x, rowStride: kernel.x)
                for i in 0..<taps { dst[i] *= scale }
            }
        }
        return result
    }
}

/// tile[z][y][x] (extents `block`) ← src[origin + (x, y, z)] where that lies inside `grid`
/// and (x, y, z) < limit; zero elsewhere. `origin` may be negative.
@_specialize(where Scalar == Float)
@_specialize(where Scalar == Double)
func gatherBlock<Scalar: NetworkScalar>(
    _ src: UnsafePointer<Scalar>, grid: GridSize, origin: GridSize, limit: GridSize,
    into tile: UnsafeMutablePointer<Scalar>, block: GridSize
) {
    tile.update(repeating: 0, count: block.voxelCount)
    func span(_ o: Int, _ g: Int, _ l: Int, _ b: Int) -> Range<Int> {
        let lo = max(0, -o), hi = min(min(l, b), g - o)
        return lo < hi ? lo..<hi : 0..<0
    }
    let xs = span(origin.x, grid.x, limit.x, block.x), ys = span(origin.y, grid.y, limit.y, block.y)
    let zs = span(origin.z, grid.z, limit.z, block.z)
    guard !xs.isEmpty else { return }
    for z in zs {
        for y in ys {
            (tile + (z * block.y + y) * block.x + xs.lowerBound)
                .update(from: src + ((origin.z + z) * grid.y + origin.y + y) * grid.x + origin.x + xs.lowerBound, count: xs.count)
        }
    }
}
