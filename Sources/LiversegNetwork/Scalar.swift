import CKernels
import COpenBLAS
import LiversegSupport
#if canImport(Glibc)
import Glibc
#endif

/// A floating-point type the network runs in: Float for inference and training, Double
/// for the float64 finite-difference checks of the backward passes. Each supplies its
/// BLAS matrix product.
public protocol NetworkScalar: BinaryFloatingPoint, Sendable {
    /// C ← α·op(A)·op(B) + β·C, row-major (cblas_sgemm / cblas_dgemm).
    static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self,
        a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// The channel sums of an FFT convolution per frequency, on split spectra (real parts,
    /// then the imaginary parts `stride` values later), for members m < `members`, i < `count`:
    ///     y[m·yMember + i] (+)= Σ_s op(k[s·kSource + i]) · x[m·xMember + s·xSource + i]
    /// (op: conjugate when `conjugateK`; `accumulate` adds each source's product to y in turn
    /// instead of overwriting y with the sum): CKernels' spectral_mix for this precision,
    /// compiled for the CPU's vector extensions.
    static func spectralMix(
        _ y: UnsafeMutablePointer<Self>, yMember: Int, _ k: UnsafePointer<Self>, kSource: Int, _ x: UnsafePointer<Self>,
        xMember: Int, xSource: Int, members: Int, sources: Int, count: Int, stride: Int, conjugateK: Bool,
        accumulate: Bool)
    /// In-place radix-2 FFT stages over vectors of complex values (`SpectralPlan.butterflies`;
    /// CKernels' radix2 for this precision).
    static func radix2(
        _ p: UnsafeMutablePointer<Self>, n: Int, stride: Int, length: Int, imaginary: Int, cosines: UnsafePointer<Self>,
        sines: UnsafePointer<Self>, inverse: Bool)
    /// One output row of a stride-2 3×3×3 transposed convolution from `rows` input rows
    /// with their x taps (CKernels' deconv_row for this precision; see ckernels.h).
    static func deconvolutionRow(
        _ out: UnsafeMutablePointer<Self>, rows: UnsafePointer<UnsafePointer<Self>>, taps: UnsafePointer<Self>,
        count: Int, x: Int, bias: Self, relu: Bool)
    /// e^x.
    static func exponential(_ x: Self) -> Self
    /// e^x in a form that loops over it vectorise: float32's `vectorisableExp` (within 2 ulp,
    /// x clamped to [−87.3, 88.3]), float64's libm exp (the reference precision, not a
    /// speed path).
    static func vectorisableExponential(_ x: Self) -> Self
    /// The natural logarithm.
    static func logarithm(_ x: Self) -> Self
}

@inline(__always)
private func transpose(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: NetworkScalar {
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, transpose(transposeA), transpose(transposeB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inline(__always) public static func spectralMix(
        _ y: UnsafeMutablePointer<Float>, yMember: Int, _ k: UnsafePointer<Float>, kSource: Int, _ x: UnsafePointer<Float>,
        xMember: Int, xSource: Int, members: Int, sources: Int, count: Int, stride: Int, conjugateK: Bool,
        accumulate: Bool
    ) {
        ckernels_spectral_mix_f32(
            y, yMember, k, kSource, x, xMember, xSource, members, sources, count, stride, conjugateK ? 1 : 0,
            accumulate ? 1 : 0)
    }
    @inline(__always) public static func radix2(
        _ p: UnsafeMutablePointer<Float>, n: Int, stride: Int, length: Int, imaginary: Int, cosines: UnsafePointer<Float>,
        sines: UnsafePointer<Float>, inverse: Bool
    ) {
        ckernels_radix2_f32(p, n, stride, length, imaginary, cosines, sines, inverse ? 1 : 0)
    }
    @inline(__always) public static func deconvolutionRow(
        _ out: UnsafeMutablePointer<Float>, rows: UnsafePointer<UnsafePointer<Float>>, taps: UnsafePointer<Float>,
        count: Int, x: Int, bias: Float, relu: Bool
    ) {
        rows.withMemoryRebound(to: UnsafePointer<Float>?.self, capacity: count) {
            ckernels_deconv_row_f32(out, $0, taps, count, x, bias, relu ? 1 : 0)
        }
    }
    @inline(__always) public static func exponential(_ x: Float) -> Float { expf(x) }
    @inline(__always) public static func vectorisableExponential(_ x: Float) -> Float { vectorisableExp(x) }
    @inline(__always) public static func logarithm(_ x: Float) -> Float { logf(x) }
}

extension Double: NetworkScalar {
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Double,
        a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        cblas_dgemm(
            CblasRowMajor, transpose(transposeA), transpose(transposeB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inline(__always) public static func spectralMix(
        _ y: UnsafeMutablePointer<Double>, yMember: Int, _ k: UnsafePointer<Double>, kSource: Int, _ x: UnsafePointer<Double>,
        xMember: Int, xSource: Int, members: Int, sources: Int, count: Int, stride: Int, conjugateK: Bool,
        accumulate: Bool
    ) {
        ckernels_spectral_mix_f64(
            y, yMember, k, kSource, x, xMember, xSource, members, sources, count, stride, conjugateK ? 1 : 0,
            accumulate ? 1 : 0)
    }
    @inline(__always) public static func radix2(
        _ p: UnsafeMutablePointer<Double>, n: Int, stride: Int, length: Int, imaginary: Int, cosines: UnsafePointer<Double>,
        sines: UnsafePointer<Double>, inverse: Bool
    ) {
        ckernels_radix2_f64(p, n, stride, length, imaginary, cosines, sines, inverse ? 1 : 0)
    }
    @inline(__always) public static func deconvolutionRow(
        _ out: UnsafeMutablePointer<Double>, rows: UnsafePointer<UnsafePointer<Double>>, taps: UnsafePointer<Double>,
        count: Int, x: Int, bias: Double, relu: Bool
    ) {
        rows.withMemoryRebound(to: UnsafePointer<Double>?.self, capacity: count) {
            ckernels_deconv_row_f64(out, $0, taps, count, x, bias, relu ? 1 : 0)
        }
    }
    @inline(__always) public static func exponential(_ x: Double) -> Double { exp(x) }
    @inline(__always) public static func vectorisableExponential(_ x: Double) -> Double { exp(x) }
    @inline(__always) public static func logarithm(_ x: Double) -> Double { log(x) }
}
