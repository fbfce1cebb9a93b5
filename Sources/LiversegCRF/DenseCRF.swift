#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport

/// How each kernel's message is normalised by the kernel's row sums D_i = Σ_j k(f_i, f_j).
public enum CRFNormalisation: Int, Sendable, CaseIterable {
    /// D^{-1/2} K D^{-1/2} Q: a symmetric operator, pydensecrf's default; less biased near
    /// regions of few similar points.
    case symmetric = 0
    /// D^{-1} K Q: every message a weighted average, as in Krähenbühl & Koltun (2011).
    case after = 1
}

/// One Gaussian pairwise kernel of the CRF: its filtering operator and its weight μ.
public struct CRFKernel {
    /// Computes Σ_j k(i, j) v_j over the CRF's points.
    public var filter: GaussianKernelFilter
    /// The kernel's weight μ (finite, ≥ 0).
    public var weight: Float

    /// Describes a kernel.
    public init(filter: GaussianKernelFilter, weight: Float) {
        self.filter = filter
        self.weight = weight
    }
}

/// A fully connected CRF over two labels (background 0, liver 1) with Potts compatibility
/// and Gaussian kernels, solved by mean field (Krähenbühl & Koltun 2011):
///
///     E_i(l) = U_i(l) + Σ_k μ_k Σ_{l' ≠ l} N_k[Q(l')]_i,   Q_i(l) ∝ exp(−E_i(l)),
///
/// where N_k is kernel k's normalised filter (`CRFNormalisation`). The sums over j include
/// j = i, as pydensecrf's do: with Potts compatibility that term adds nothing to the
/// energy E(y) of eq. 5, and it keeps the normalised messages well defined for points
/// with no similar neighbours.
///
/// The kernels' filters (lattices) are built once by the caller and reused by every
/// iteration. Deterministic
/// whatever the thread count. One inference at a time per instance.
public final class DenseCRF {
    /// Probabilities are clamped to [ε, 1 − ε] before −log, so a confident network output
    /// (p = 0 or 1) still has a finite unary that strong pairwise evidence can overturn.
    /// 1e-5 matches pydensecrf's `unary_from_softmax` default.
    public static let probabilityEpsilon: Float = 1e-5

    private struct PreparedKernel {
        let filter: GaussianKernelFilter
        let weight: Float
        /// 1/D_i (after) or 1/√D_i (symmetric).
        let norm: Buffer<Float>
        /// N_k[1]: 1 for "after"; for symmetric it varies and is filtered once here.
        let onesResponse: Buffer<Float>?
    }

    /// Number of points.
    public let count: Int
    /// Normalisation of every kernel.
    public let normalisation: CRFNormalisation
    private let kernels: [PreparedKernel]
    /// Filter input and output for one kernel.
    private let scratch: (Buffer<Float>, Buffer<Float>)

    /// Prepares the kernels' normalisers. Kernels with weight 0 are skipped. `checkpoint`
    /// runs on the calling thread between the filterings' passes and may throw to stop.
    public init(
        count: Int, kernels specs: [CRFKernel], normalisation: CRFNormalisation, threads: Int,
        checkpoint: () throws -> Void = {}
    ) throws {
        self.count = count
        self.normalisation = normalisation
        scratch = (try Buffer(count: count, zeroed: false), try Buffer(count: count, zeroed: false))
        var prepared: [PreparedKernel] = []
        for spec in specs {
            guard spec.weight.isFinite, spec.weight >= 0 else {
                throw LiversegError.invalidArgument("CRF kernel weight \(spec.weight) must be finite and >= 0")
            }
            if spec.weight == 0 { continue }
            let norm = try Buffer<Float>(count: count, zeroed: false)
            try spec.filter.rowSums(into: norm.pointer, count: count, threads: threads, checkpoint: checkpoint)
            let symmetric = normalisation == .symmetric
            nonisolated(unsafe) let d = norm.pointer
            try parallelRounds(count, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                // D_i ≥ the point's own weight > 0; the floor only guards rounding.
                for i in range {
                    d[i] = symmetric ? 1 / max(d[i], .leastNormalMagnitude).squareRoot() : 1 / max(d[i], .leastNormalMagnitude)
                }
            }
            var response: Buffer<Float>? = nil
            if symmetric {
                let z = try Buffer<Float>(count: count, zeroed: false)
                try spec.filter.apply(norm.pointer, into: z.pointer, threads: threads, checkpoint: checkpoint)
                nonisolated(unsafe) let zp = z.pointer
                try parallelRounds(count, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                    for i in range { zp[i] *= d[i] }
                }
                response = z
            }
            prepared.append(PreparedKernel(filter: spec.filter, weight: spec.weight, norm: norm, onesResponse: response))
        }
        self.kernels = prepared
    }

    /// Runs `iterations` mean-field updates starting from Q = p̂ and writes the final
    /// Q(liver) to `liver`; a point is liver when Q(liver) ≥ 0.5. `probability` holds p̂
    /// (validated by the caller to lie in [0, 1]); `afterIteration(t)` runs on the calling
    /// thread after update t (1-based) and may throw to stop; `checkpoint` runs there
    /// between the passes of each filtering, and may throw too.
    public func infer(
        probability: UnsafePointer<Float>, iterations: Int, threads: Int,
        into liver: UnsafeMutablePointer<Float>, afterIteration: (Int) throws -> Void = { _ in },
        checkpoint: () throws -> Void = {}
    ) throws {
        let n = count
        // unary[i] = U_i(liver) − U_i(background) = log(1 − p) − log(p).
        let unary = try Buffer<Float>(count: n, zeroed: false)
        let delta = try Buffer<Float>(count: n, zeroed: false)
        nonisolated(unsafe) let u = unary.pointer, q = liver, e = delta.pointer
        nonisolated(unsafe) let m = scratch.0.pointer, filtered = scratch.1.pointer
        nonisolated(unsafe) let p = probability
        let eps = DenseCRF.probabilityEpsilon
        try parallelRounds(n, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
            for i in range {
                let pi = min(max(p[i], eps), 1 - eps)
                u[i] = log(1 - pi) - log(pi)
                q[i] = pi
            }
        }
        guard iterations > 0 else { return }
        for t in 1...iterations {
            delta.pointer.update(from: unary.pointer, count: n)
            for kernel in kernels {
                // The liver label pays μ·N[Q(background)], background pays μ·N[Q(liver)];
                // N[Q(background)] = N[1] − N[Q(liver)] saves a second filtering. The loops
                // below have no per-element choices, so they vectorise.
                nonisolated(unsafe) let norm = kernel.norm.pointer
                let mu = kernel.weight
                if let response = kernel.onesResponse {
                    // Symmetric: N[Q] = D^-½ K D^-½ Q, and N[1] varies.
                    nonisolated(unsafe) let ones = response.pointer
                    try parallelRounds(n, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                        for i in range { m[i] = q[i] * norm[i] }
                    }
                    try kernel.filter.apply(m, into: filtered, threads: threads, checkpoint: checkpoint)
                    try parallelRounds(n, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                        for i in range { e[i] += mu * (ones[i] - 2 * filtered[i] * norm[i]) }
                    }
                } else {
                    // After: N[Q] = D^-1 K Q, and N[1] = 1.
                    try kernel.filter.apply(UnsafePointer(q), into: filtered, threads: threads, checkpoint: checkpoint)
                    try parallelRounds(n, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                        for i in range { e[i] += mu * (1 - 2 * filtered[i] * norm[i]) }
                    }
                }
            }
            try parallelRounds(n, threads: threads, checkpoint: { _ in try checkpoint() }) { _, range in
                for i in range { q[i] = 1 / (1 + vectorisableExp(e[i])) }
            }
            try afterIteration(t)
        }
    }
}
