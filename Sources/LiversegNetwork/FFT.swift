#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport

/// Real 3-D discrete Fourier transforms of one block size: the transforms of the FFT
/// convolution.
///
/// A real block [nz][ny][nx] maps to a half spectrum of nz·ny·nc complex values
/// (nc = nx/2 + 1), stored split: the real parts [nz][ny][nc], then the imaginary parts.
/// x (any length) is transformed by one matrix product of all rows with the real DFT matrix
/// (cblas GEMM); y and z (powers of two) by radix-2 FFTs whose butterflies act on whole
/// rows (y) or planes (z), so every inner loop runs over contiguous memory and vectorises.
/// The forward FFTs leave y and z frequencies in bit-reversed order and the inverse FFTs read
/// that order: the convolution only multiplies spectra pointwise, so no permutation is needed.
/// Unnormalised: inverse(forward(b)) = nx·ny·nz·b.
final class SpectralPlan<Scalar: NetworkScalar>: @unchecked Sendable {
    /// Block extents (x, y, z).
    let size: GridSize
    /// Complex frequencies along x: nx/2 + 1.
    let nc: Int
    /// Complex values of one half spectrum: nz·ny·nc (the imaginary parts start here).
    let complexCount: Int
    /// Real DFT along x, [nx][nc]: cos(2πjk/nx) and −sin(2πjk/nx).
    private let forwardRe: [Scalar], forwardIm: [Scalar]
    /// Inverse real DFT along x, [nc][nx]: c_k·cos(2πjk/nx) and −c_k·sin(2πjk/nx), where
    /// c_k = 2 except for the frequencies without a conjugate twin (0 and nx/2).
    private let inverseRe: [Scalar], inverseIm: [Scalar]
    /// cos(2πj/n), sin(2πj/n) for j < n/2, n = ny and n = nz.
    private let twiddlesY: (cos: [Scalar], sin: [Scalar]), twiddlesZ: (cos: [Scalar], sin: [Scalar])

    /// Scalars of one split half spectrum.
    var spectrumCount: Int { 2 * complexCount }

    /// A plan for blocks of `size`; y and z must be powers of two.
    init(size: GridSize) {
        precondition(size.y & (size.y - 1) == 0 && size.z & (size.z - 1) == 0 && size.x >= 1)
        self.size = size
        let nx = size.x, nc = nx / 2 + 1
        self.nc = nc
        complexCount = size.z * size.y * nc
        func angle(_ j: Int, _ k: Int, _ n: Int) -> Double { 2 * Double.pi * Double((j * k) % n) / Double(n) }
        var fr = [Scalar](repeating: 0, count: nx * nc), fi = fr, ir = fr, ii = fr
        for j in 0..<nx {
            for k in 0..<nc {
                let a = angle(j, k, nx)
                let weight: Double = (k == 0 || 2 * k == nx) ? 1 : 2
                fr[j * nc + k] = Scalar(cos(a)); fi[j * nc + k] = Scalar(-sin(a))
                ir[k * nx + j] = Scalar(weight * cos(a)); ii[k * nx + j] = Scalar(-weight * sin(a))
            }
        }
        forwardRe = fr; forwardIm = fi; inverseRe = ir; inverseIm = ii
        func twiddles(_ n: Int) -> (cos: [Scalar], sin: [Scalar]) {
            ((0..<n / 2).map { Scalar(cos(angle($0, 1, n))) }, (0..<n / 2).map { Scalar(sin(angle($0, 1, n))) })
        }
        twiddlesY = twiddles(size.y)
        twiddlesZ = twiddles(size.z)
    }

    /// block [nz][ny][nx] (real) → spectrum (split half spectrum, `spectrumCount` scalars).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func forward(_ block: UnsafePointer<Scalar>, _ spectrum: UnsafeMutablePointer<Scalar>) {
        let rows = size.z * size.y
        forwardRe.withUnsafeBufferPointer { m in
            Scalar.gemm(
                transposeA: false, transposeB: false, m: rows, n: nc, k: size.x, alpha: 1, a: block, lda: size.x,
                b: m.baseAddress!, ldb: nc, beta: 0, c: spectrum, ldc: nc)
        }
        forwardIm.withUnsafeBufferPointer { m in
            Scalar.gemm(
                transposeA: false, transposeB: false, m: rows, n: nc, k: size.x, alpha: 1, a: block, lda: size.x,
                b: m.baseAddress!, ldb: nc, beta: 0, c: spectrum + complexCount, ldc: nc)
        }
        let plane = size.y * nc
        for z in 0..<size.z {
            Self.butterflies(
                spectrum + z * plane, n: size.y, stride: nc, length: nc, imaginary: complexCount,
                twiddles: twiddlesY, inverse: false)
        }
        Self.butterflies(
            spectrum, n: size.z, stride: plane, length: plane, imaginary: complexCount,
            twiddles: twiddlesZ, inverse: false)
    }

    /// Inverse of `forward` (unnormalised), in place on y and z; then the x transform of the
    /// rows y ∈ rowsY of the planes z ∈ planesZ, for the columns x ∈ columns only, into
    /// `out` at out[(z − planesZ.lowerBound)·planeStride + (y − rowsY.lowerBound)·rowStride + x − columns.lowerBound].
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func inverse(
        _ spectrum: UnsafeMutablePointer<Scalar>, planesZ: Range<Int>, rowsY: Range<Int>, columns: Range<Int>,
        into out: UnsafeMutablePointer<Scalar>, planeStride: Int, rowStride: Int
    ) {
        let plane = size.y * nc
        Self.butterflies(
            spectrum, n: size.z, stride: plane, length: plane, imaginary: complexCount,
            twiddles: twiddlesZ, inverse: true)
        for z in planesZ {
            let p = spectrum + z * plane
            Self.butterflies(p, n: size.y, stride: nc, length: nc, imaginary: complexCount, twiddles: twiddlesY, inverse: true)
            let dst = out + (z - planesZ.lowerBound) * planeStride
            let first = p + rowsY.lowerBound * nc
            inverseRe.withUnsafeBufferPointer { m in
                Scalar.gemm(
                    transposeA: false, transposeB: false, m: rowsY.count, n: columns.count, k: nc, alpha: 1,
                    a: first, lda: nc, b: m.baseAddress! + columns.lowerBound, ldb: size.x,
                    beta: 0, c: dst, ldc: rowStride)
            }
            inverseIm.withUnsafeBufferPointer { m in
                Scalar.gemm(
                    transposeA: false, transposeB: false, m: rowsY.count, n: columns.count, k: nc, alpha: 1,
                    a: first + complexCount, lda: nc, b: m.baseAddress! + columns.lowerBound, ldb: size.x,
                    beta: 1, c: dst, ldc: rowStride)
            }
        }
    }

    /// Radix-2 FFT over `n` elements `stride` apart, each a vector of `length` complex values
    /// (real parts at p, imaginary parts at p + imaginary). Forward: decimation in frequency,
    /// natural order in, bit-reversed out, twiddles e^(−2πij/m). Inverse: decimation in time,
    /// bit-reversed in, natural out, e^(+2πij/m), undoing the forward stages in reverse order.
    /// In C compiled for the CPU's vector extensions (Sources/CKernels).
    private static func butterflies(
        _ p: UnsafeMutablePointer<Scalar>, n: Int, stride: Int, length: Int, imaginary: Int,
        twiddles: (cos: [Scalar], sin: [Scalar]), inverse: Bool
    ) {
        guard n > 1 else { return }
        twiddles.cos.withUnsafeBufferPointer { cosines in
            twiddles.sin.withUnsafeBufferPointer { sines in
                Scalar.radix2(
                    p, n: n, stride: stride, length: length, imaginary: imaginary, cosines: cosines.baseAddress!,
                    sines: sines.baseAddress!, inverse: inverse)
            }
        }
    }
}
