import XCTest
@testable import LiversegCRF
@testable import LiversegSupport
@testable import LiversegVolume

/// Mean-field inference against an exact dense CRF written here from the equations
/// (float64, O(N²) kernel sums, no lattice), plus behaviour on synthetic images.
final class CRFMeanFieldTests: XCTestCase {

    /// The exact model: kernels k(i, j) = exp(−|f_i − f_j|²/2) with j = i included,
    /// normaliser D = K·1, N[v] = D^{-1/2} K D^{-1/2} v (symmetric) or D^{-1} K v (after),
    /// E(liver) − E(background) = log(1−p) − log(p) + Σ_k μ_k (N_k[1] − 2 N_k[Q]),
    /// Q ← 1/(1 + exp(E(liver) − E(background))), p clamped to [1e-5, 1 − 1e-5].
    static func exactMeanField(
        features: [[[Double]]], weights: [Double], probability: [Double],
        iterations: Int, normalisation: CRFNormalisation
    ) -> [Double] {
        let n = probability.count
        var kernels: [[Double]] = [], norms: [[Double]] = [], onesResponses: [[Double]] = []
        for f in features {
            var k = [Double](repeating: 0, count: n * n)
            for i in 0..<n {
                for j in 0..<n {
                    var r2 = 0.0
                    for c in 0..<f[i].count { r2 += (f[i][c] - f[j][c]) * (f[i][c] - f[j][c]) }
                    k[i * n + j] = exp(-r2 / 2)
                }
            }
            let rowSums = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + k[i * n + $1] } }
            let norm = rowSums.map { normalisation == .symmetric ? 1 / $0.squareRoot() : 1 / $0 }
            let ones = (0..<n).map { i in
                normalisation == .symmetric ? norm[i] * (0..<n).reduce(0.0) { $0 + k[i * n + $1] * norm[$1] } : 1
            }
            kernels.append(k); norms.append(norm); onesResponses.append(ones)
        }
        let p = probability.map { min(max($0, 1e-5), 1 - 1e-5) }
        let unary = p.map { log(1 - $0) - log($0) }
        var q = p
        for _ in 0..<iterations {
            var delta = unary
            for (kIndex, k) in kernels.enumerated() {
                let norm = norms[kIndex]
                let input = (0..<n).map { normalisation == .symmetric ? q[$0] * norm[$0] : q[$0] }
                for i in 0..<n {
                    var sum = 0.0
                    for j in 0..<n { sum += k[i * n + j] * input[j] }
                    delta[i] += weights[kIndex] * (onesResponses[kIndex][i] - 2 * norm[i] * sum)
                }
            }
            q = delta.map { 1 / (1 + exp($0)) }
        }
        return q
    }

    /// A CT-like test scene: a bright blob (60 HU) on 0 HU with noise, and a probability
    /// that is right in the middle, uncertain and partly wrong near the boundary.
    struct Scene {
        var size: [Int]
        var spacing: [Double]
        var hu: [Int16]
        var probability: [Float]
        var truth: [UInt8]

        /// `flip`: fraction of probabilities replaced by 1 − p. `impulses`: instead of the
        /// blurred, shifted probability, 0.8 inside and 0.2 outside the true boundary with
        /// this fraction of pixels replaced by salt (0.98) or pepper (0.02) at random.
        init(size: [Int], spacing: [Double], seed: UInt64, noiseHU: Double = 8, flip: Double = 0, impulses: Double = 0) {
            self.size = size
            self.spacing = spacing
            var rng = SeededGenerator(seed: seed)
            let n = size.reduce(1, *)
            hu = []; probability = []; truth = []
            let centre = (0..<3).map { Double(size[$0] - 1) / 2 * spacing[$0] }
            let radius = 0.33 * Double(min(size[0], size[1])) * min(spacing[0], spacing[1])
            for v in 0..<n {
                let idx = [v % size[0], (v / size[0]) % size[1], v / (size[0] * size[1])]
                let r = (0..<3).map { Double(idx[$0]) * spacing[$0] - centre[$0] }
                let dist = (r[0] * r[0] + r[1] * r[1] * 1.4 + r[2] * r[2] * 0.5).squareRoot() - radius
                let inside = dist < 0
                truth.append(inside ? 1 : 0)
                let noise = (rng.uniform() - 0.5) * 2 * noiseHU
                hu.append(Int16((inside ? 60 : 0) + noise))
                // A probability blurred across the boundary and shifted outwards by 1.5 mm.
                var pr = 1 / (1 + exp((dist - 1.5) / 1.2))
                pr = min(max(pr + (rng.uniform() - 0.5) * 0.3, 0), 1)
                if rng.uniform() < flip { pr = 1 - pr }
                if impulses > 0 {
                    pr = inside ? 0.8 : 0.2
                    if rng.uniform() < impulses { pr = rng.uniform() < 0.5 ? 0.02 : 0.98 }
                }
                probability.append(Float(pr))
            }
        }

        func volume(_ body: (VolumeInput) throws -> Void) rethrows {
            try hu.withUnsafeBufferPointer { h in
                try body(
                    VolumeInput(
                        voxels: .int16(h.baseAddress!), size: GridSize(x: size[0], y: size[1], z: size[2]),
                        spacing: spacing, ijkToRAS: nil))
            }
        }

        /// The borrowed-buffer refiner (the one behind every front end), its output
        /// pre-filled with 7 so a voxel it fails to write shows.
        func refine(_ parameters: CRFParameters) throws -> [UInt8] {
            var mask = [UInt8](repeating: 7, count: probability.count)
            try volume { v in try refineWithCRF(v, probability: probability, parameters: parameters, mask: &mask) }
            return mask
        }
    }

    /// Features exactly as the refiner builds them: positions in mm from the box origin
    /// over θ, and HU / θβ.
    static func features(_ scene: Scene, axes: [Int], _ p: CRFParameters) -> (bilateral: [[Double]], spatial: [[Double]]) {
        var bilateral: [[Double]] = [], spatial: [[Double]] = []
        for v in 0..<scene.hu.count {
            let idx = [v % scene.size[0], (v / scene.size[0]) % scene.size[1], v / (scene.size[0] * scene.size[1])]
            let mm = axes.map { Double(idx[$0]) * scene.spacing[$0] }
            bilateral.append(mm.map { $0 / p.thetaAlphaMM } + [Double(scene.hu[v]) / p.thetaBetaHU])
            spatial.append(mm.map { $0 / p.thetaGammaMM })
        }
        return (bilateral, spatial)
    }

    func checkAgainstExact(size: [Int], spacing: [Double], mode: CRFMode, normalisation: CRFNormalisation) throws {
        var scene = Scene(size: size, spacing: spacing, seed: 42)
        // A weakly confident unary (p in [0.2, 0.8]) and moderate weights keep many points
        // undecided, where Q is sensitive to the pairwise terms.
        scene.probability = scene.probability.map { 0.5 + 0.6 * ($0 - 0.5) }
        var params = CRFParameters()
        params.mode = mode
        params.normalisation = normalisation
        params.restrictToUncertainRegion = false
        params.thetaAlphaMM = 3; params.thetaBetaHU = 20; params.thetaGammaMM = 2
        params.bilateralWeight = 3; params.spatialWeight = 1
        params.iterations = 5
        let axes = mode == .slice2d ? [0, 1] : [0, 1, 2]
        XCTAssertTrue(mode == .volume3d || size[2] == 1)
        let f = Self.features(scene, axes: axes, params)
        let p = scene.probability.map(Double.init)
        let exact = Self.exactMeanField(
            features: [f.bilateral, f.spatial], weights: [3, 1], probability: p,
            iterations: 5, normalisation: normalisation)
        let otherNormalisation = Self.exactMeanField(
            features: [f.bilateral, f.spatial], weights: [3, 1], probability: p,
            iterations: 5, normalisation: normalisation == .symmetric ? .after : .symmetric)
        // The CRF class with lattices for both kernels on the same features.
        let n = scene.hu.count
        let flatB = f.bilateral.flatMap { $0.map(Float.init) }, flatS = f.spatial.flatMap { $0.map(Float.init) }
        let bilateralLattice = try PermutohedralLattice(
            features: flatB, count: n, dimension: axes.count + 1, kernelName: "b", threads: 2)
        let spatialLattice = try PermutohedralLattice(
            features: flatS, count: n, dimension: axes.count, kernelName: "s", threads: 2)
        let crf = try DenseCRF(
            count: n, kernels: [CRFKernel(filter: bilateralLattice, weight: 3), CRFKernel(filter: spatialLattice, weight: 1)],
            normalisation: normalisation, threads: 2)
        var q = [Float](repeating: 0, count: n)
        try crf.infer(probability: scene.probability, iterations: 5, threads: 2, into: &q)
        let errors = (0..<n).map { abs(Double(q[$0]) - exact[$0]) }
        let meanError = errors.reduce(0, +) / Double(n), maxError = errors.max() ?? 0
        let normalisationEffect = (0..<n).map { abs(otherNormalisation[$0] - exact[$0]) }.reduce(0, +) / Double(n)
        let agree = (0..<n).filter { (q[$0] >= 0.5) == (exact[$0] >= 0.5) }.count
        // And the refiner end to end (its own features, and the exact grid filter for the
        // spatial kernel).
        let mask = try scene.refine(params)
        let agreeRefiner = (0..<n).filter { (mask[$0] == 1) == (exact[$0] >= 0.5) }.count
        let changed = (0..<n).filter { (exact[$0] >= 0.5) != (scene.probability[$0] >= 0.5) }.count
        print(
            String(
                format:
                    "mean field vs exact, %@ %@ %d points: |ΔQ| mean %.5f max %.4f (other normalisation: mean %.5f), labels agree %.2f%% (refiner %.2f%%); the exact CRF changed %d labels",
                "\(mode)", "\(normalisation)", n, meanError, maxError, normalisationEffect,
                100 * Double(agree) / Double(n), 100 * Double(agreeRefiner) / Double(n), changed))
        // Tolerance from the lattice's accuracy: its normalised filtering errs by ≲0.3% on
        // average at these bandwidths (≥ 2.5 voxels, CRFLatticeTests); through 2·(μ1 + μ2) = 8
        // that moves energies by ≲0.024 and so Q by ≲0.006 (dQ/dE ≤ 1/4).
        XCTAssertLessThan(meanError, 0.006)
        XCTAssertLessThan(maxError, 0.1)
        // The approximation must be closer than a different (wrong) model would be.
        XCTAssertLessThan(meanError, 0.5 * normalisationEffect)
        XCTAssertGreaterThanOrEqual(Double(agree) / Double(n), 0.99)
        XCTAssertGreaterThanOrEqual(Double(agreeRefiner) / Double(n), 0.99)
        XCTAssertGreaterThan(changed, n / 100, "the scene should make the CRF do something")
    }

    func testGridFilterIsTheExactSpatialGaussian() throws {
        let extent = [13, 9, 5], sigma = [1.7, 2.5, 0.9]
        let n = extent.reduce(1, *)
        var rng = SeededGenerator(seed: 3)
        let values = (0..<n).map { _ in Float(rng.uniform()) }
        var out = [Float](repeating: 0, count: n), sums = [Float](repeating: 0, count: n)
        let filter = try GridGaussianFilter(extent: extent, sigmaVoxels: sigma)
        try filter.apply(values, into: &out, threads: 2)
        try sums.withUnsafeMutableBufferPointer { try filter.rowSums(into: $0.baseAddress!, count: n, threads: 2) }
        var worst = 0.0, worstSum = 0.0
        for a in 0..<n {
            var exact = 0.0, exactSum = 0.0
            for b in 0..<n {
                var r2 = 0.0
                for (axis, c) in [(0, 1), (1, extent[0]), (2, extent[0] * extent[1])] {
                    let t = Double((a / c) % extent[axis] - (b / c) % extent[axis]) / sigma[axis]
                    r2 += t * t
                }
                exact += exp(-r2 / 2) * Double(values[b])
                exactSum += exp(-r2 / 2)
            }
            worst = max(worst, abs(Double(out[a]) - exact) / exact)
            worstSum = max(worstSum, abs(Double(sums[a]) - exactSum) / exactSum)
        }
        // Truncation at 4σ drops < exp(−8) ≈ 3.4e-4 of the weight per axis.
        XCTAssertLessThan(worst, 1e-3)
        XCTAssertLessThan(worstSum, 1e-3)
    }

    func testSliceMatchesExactDenseCRFSymmetric() throws {
        try checkAgainstExact(size: [36, 30, 1], spacing: [0.8, 0.8, 1.6], mode: .slice2d, normalisation: .symmetric)
    }

    func testSliceMatchesExactDenseCRFAfter() throws {
        try checkAgainstExact(size: [36, 30, 1], spacing: [0.8, 0.8, 1.6], mode: .slice2d, normalisation: .after)
    }

    func testVolumeMatchesExactDenseCRF() throws {
        try checkAgainstExact(size: [16, 14, 6], spacing: [0.8, 0.8, 1.6], mode: .volume3d, normalisation: .symmetric)
    }

    func testRestoresBoundaryUnderSaltAndPepperUnary() throws {
        let scene = Scene(size: [64, 64, 1], spacing: [0.7, 0.7, 1.5], seed: 5, noiseHU: 5, impulses: 0.15)
        let n = scene.hu.count
        let thresholded = (0..<n).filter { (scene.probability[$0] >= 0.5 ? 1 : 0) != scene.truth[$0] }.count
        var params = CRFParameters()
        params.restrictToUncertainRegion = false
        params.thetaAlphaMM = 6; params.thetaBetaHU = 15; params.thetaGammaMM = 2
        params.bilateralWeight = 5; params.spatialWeight = 3
        let mask = try scene.refine(params)
        let wrong = (0..<n).filter { mask[$0] != scene.truth[$0] }.count
        print("salt and pepper: thresholded \(thresholded) wrong pixels, CRF \(wrong) of \(n)")
        XCTAssertGreaterThan(thresholded, n / 20)
        XCTAssertLessThan(wrong, n / 200)
    }

    func testSameMaskWhateverTheThreadCount() throws {
        let scene = Scene(size: [40, 36, 9], spacing: [0.8, 0.8, 1.6], seed: 9, flip: 0.05)
        for mode in CRFMode.allCases {
            var params = CRFParameters()
            params.mode = mode
            params.threads = 1
            let one = try scene.refine(params)
            params.threads = 3
            XCTAssertEqual(one, try scene.refine(params), "\(mode)")
        }
    }

    func testUncertainRegionLeavesConfidentVoxelsThresholded() throws {
        var scene = Scene(size: [40, 36, 3], spacing: [0.8, 0.8, 1.6], seed: 3)
        // Slice 0 entirely confident: it must come back exactly thresholded.
        for v in 0..<(40 * 36) { scene.probability[v] = scene.truth[v] == 1 ? 0.999 : 0.0 }
        var params = CRFParameters()
        params.uncertainMarginMM = 2
        let mask = try scene.refine(params)
        for v in 0..<(40 * 36) { XCTAssertEqual(mask[v], scene.probability[v] >= 0.5 ? 1 : 0) }
        params.restrictToUncertainRegion = false
        let full = try scene.refine(params)
        let differ = (0..<mask.count).filter { mask[$0] != full[$0] }.count
        XCTAssertLessThan(differ, mask.count / 100)
    }

    func testExtremeParametersNeitherTrapNorMisbehave() throws {
        let scene = Scene(size: [12, 10, 3], spacing: [0.8, 0.8, 1.6], seed: 4)
        for mode in CRFMode.allCases {
            var params = CRFParameters()
            params.mode = mode
            // Huge bandwidths and margin: every voxel sees every other equally.
            params.thetaAlphaMM = 1e300; params.thetaGammaMM = 1e300; params.uncertainMarginMM = 1e300
            XCTAssertEqual(try scene.refine(params).count, scene.hu.count)
            // Tiny bandwidths: either isolated points (identity) or a clear error naming θ.
            params = CRFParameters()
            params.mode = mode
            params.thetaGammaMM = 1e-300
            XCTAssertEqual(try scene.refine(params).count, scene.hu.count)
            params.thetaAlphaMM = 1e-300
            XCTAssertThrowsError(try scene.refine(params)) { XCTAssertTrue("\($0)".contains("theta_alpha_mm"), "\($0)") }
            params = CRFParameters()
            params.thetaBetaHU = 1e-300
            XCTAssertThrowsError(try scene.refine(params)) { XCTAssertTrue("\($0)".contains("theta_beta_hu"), "\($0)") }
            params = CRFParameters()
            params.bilateralWeight = 1e300
            XCTAssertThrowsError(try scene.refine(params)) { XCTAssertTrue("\($0)".contains("mu1"), "\($0)") }
        }
    }

    func testParametersFromModelMetadata() throws {
        XCTAssertEqual(try CRFParameters(modelMetadata: nil), CRFParameters())
        let doc = try parseJSON(
            Array(
                #"{"mode": "volume3d", "n_iterations": 8, "mu1": 4, "theta_beta_hu": 9.5, "uncertain_only": false, "normalisation": "after"}"#
                    .utf8))
        let p = try CRFParameters(modelMetadata: doc)
        var expected = CRFParameters()
        expected.mode = .volume3d; expected.iterations = 8; expected.bilateralWeight = 4; expected.thetaBetaHU = 9.5
        expected.restrictToUncertainRegion = false; expected.normalisation = .after
        XCTAssertEqual(p, expected)
        for bad in [#"{"theta_alpha_mm": -1}"#, #"{"mode": "3d"}"#, #"{"mu3": 1}"#, #"{"n_iterations": 2.5}"#, #"[]"#] {
            XCTAssertThrowsError(try CRFParameters(modelMetadata: try parseJSON(Array(bad.utf8))), bad) { error in
                guard case LiversegError.invalidModel = error else { return XCTFail("\(bad): \(error)") }
            }
        }
    }

    func testRejectsInvalidParametersNamingThem() throws {
        let scene = Scene(size: [8, 8, 2], spacing: [1, 1, 1], seed: 1)
        let cases: [(String, (inout CRFParameters) -> Void)] = [
            ("theta_alpha_mm", { $0.thetaAlphaMM = 0 }), ("theta_beta_hu", { $0.thetaBetaHU = .nan }),
            ("theta_gamma_mm", { $0.thetaGammaMM = -1 }), ("mu1", { $0.bilateralWeight = -0.5 }),
            ("mu2", { $0.spatialWeight = .infinity }), ("n_iterations", { $0.iterations = -1 }),
            ("uncertain_probability", { $0.uncertainProbability = 0.5 }), ("uncertain_margin_mm", { $0.uncertainMarginMM = -1 }),
            ("n_threads", { $0.threads = -2 }),
        ]
        for (name, change) in cases {
            var params = CRFParameters()
            change(&params)
            XCTAssertThrowsError(try scene.refine(params), name) { error in
                guard case LiversegError.invalidArgument(let message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains(name), message)
            }
        }
        for bad in [Float.nan, 1.5, -0.1] {
            var broken = scene
            broken.probability[77] = bad
            XCTAssertThrowsError(try broken.refine(CRFParameters())) { error in
                XCTAssertTrue("\(error)".contains("probability[77]"), "\(error)")
            }
        }
    }
}
