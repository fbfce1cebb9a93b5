import XCTest
@testable import LiversegTraining
@testable import LiversegCRF
@testable import LiversegSupport
@testable import LiversegNetwork
@testable import LiversegPipeline

final class TrainingTests: XCTestCase {
    /// A synthetic labelled volume: a bright ellipsoid ("liver") in darker noise.
    func syntheticVolume(seed: UInt64) -> TrainingVolume {
        let size = GridSize(x: 32, y: 32, z: 20)
        var rng = SeededGenerator(seed: seed)
        var intensities = [Float](), labels = [UInt8]()
        for z in 0..<size.z {
            for y in 0..<size.y {
                for x in 0..<size.x {
                    let d = pow(Double(x - 15) / 10, 2) + pow(Double(y - 17) / 9, 2) + pow(Double(z - 10) / 6, 2)
                    let inside = d < 1
                    labels.append(inside ? 1 : 0)
                    intensities.append(Float((inside ? 1.0 : -0.5) + 0.3 * rng.gaussian()))
                }
            }
        }
        return TrainingVolume(name: "synthetic", size: size, intensities: intensities, labels: labels)
    }

    func tinyConfiguration() -> TrainingConfiguration {
        tinyTrainingConfiguration(
            preprocessing: Preprocessing(
                spacing: [1, 1, 1], orientation: AxisCodes("RAS")!, huWindow: (-1000, 1000), mean: 0, std: 1))
    }

    func testTinyNetworkLearnsASyntheticOrgan() throws {
        let c = tinyConfiguration()
        // The symmetric turns and mirror (the sampler this test was calibrated with): the
        // synthetic organ has no left or right, and 400 steps on one 32×32×20 volume reach
        // Dice 0.85 (no augmentation) or 0.76 (anatomical, with its crops) instead of > 0.9.
        let sampler = try PatchSampler(
            volumes: [syntheticVolume(seed: 1)], patch: c.patch, padValue: -0.5, seed: 3,
            spatialAugmentation: .symmetric, preprocessing: .default)
        let trainer = try Trainer(configuration: c)
        var losses: [Double] = []
        for _ in 0..<40 { losses.append(try trainer.trainEpoch(sampler).main) }
        XCTAssertLessThan(losses.last!, 0.3 * losses.first!, "losses \(losses)")
        // Dice of the trained network on the whole training volume (it should overfit it).
        let test = syntheticVolume(seed: 1)
        let input = Tensor<Float>(channels: 1, size: test.size, storage: try Buffer(test.intensities))
        let p = try trainer.network().forward(input, threads: 2).main.array
        let predicted = p.map { $0 >= 0.5 }
        let overlap = zip(predicted, test.labels).filter { $0 && $1 == 1 }.count
        let dice = 2 * Double(overlap) / Double(predicted.filter { $0 }.count + test.labels.filter { $0 == 1 }.count)
        XCTAssertGreaterThan(dice, 0.9, "losses \(losses)")
    }

    func testResumeFromCheckpointIsBitIdentical() throws {
        let c = tinyConfiguration()
        let sampler = try PatchSampler(
            volumes: [syntheticVolume(seed: 1)], patch: c.patch, padValue: -0.5, seed: 3, preprocessing: .default)
        let straight = try Trainer(configuration: c)
        _ = try straight.trainEpoch(sampler)
        _ = try straight.trainEpoch(sampler)

        let first = try Trainer(configuration: c)
        _ = try first.trainEpoch(sampler)
        let checkpoint = first.checkpointBytes()
        let resumed = try Trainer(configuration: c)
        try resumed.resume(fromCheckpoint: checkpoint)
        XCTAssertEqual(resumed.epochsDone, 1)
        _ = try resumed.trainEpoch(sampler)
        XCTAssertEqual(resumed.parameters, straight.parameters)
        XCTAssertEqual(resumed.velocity, straight.velocity)

        var other = c
        other.seed = 8
        XCTAssertThrowsError(try Trainer(configuration: other).resume(fromCheckpoint: checkpoint))
        var warped = c
        warped.spatialAugmentation = .elastic
        XCTAssertThrowsError(try Trainer(configuration: warped).resume(fromCheckpoint: checkpoint)) {
            XCTAssert("\($0)".contains("spatial augmentation"), "\($0)")
        }
    }

    /// Training gives the same weights whatever the thread count (a run's `--threads` need
    /// not be known to reproduce it). The up-sampling layers have the paper network's 16
    /// channels: with the tiny network's 4 the GEMMs were too small to show the split of
    /// the transposed convolutions' dX across threads that made training depend on it.
    func testTrainingDoesNotDependOnTheThreadCount() throws {
        var weights: [[Float]] = []
        for threads in [1, 2, 3] {
            var c = tinyConfiguration()
            c.architecture.mainDeconvChannels = 16
            c.architecture.branch2DeconvChannels = 16
            c.iterationsPerEpoch = 3
            c.threads = threads
            let sampler = try PatchSampler(
                volumes: [syntheticVolume(seed: 1)], patch: c.patch, padValue: -0.5, seed: 3, preprocessing: .default)
            let trainer = try Trainer(configuration: c)
            _ = try trainer.trainEpoch(sampler)
            weights.append(trainer.parameters)
        }
        XCTAssertTrue(weights[1] == weights[0], "2 threads against 1")
        XCTAssertTrue(weights[2] == weights[0], "3 threads against 1")
    }

    /// The plain 3D-CNN's branches stay untrained, so its model must fuse the main output alone.
    func testPlainCNNModelFusesItsMainOutputAlone() throws {
        var c = tinyConfiguration()
        c.fusionTau = [0.2, 0.3]
        XCTAssertEqual(try Trainer(configuration: c).model().fusionTau, [0.2, 0.3])
        c.deepSupervision = false
        XCTAssertEqual(try Trainer(configuration: c).model().fusionTau, [0, 0])
    }

    func testSchedulesAndSamplerAreDeterministic() throws {
        var c = tinyConfiguration()
        XCTAssertEqual(c.eta(epoch: 9).0, 0.3)
        XCTAssertEqual(c.eta(epoch: 10).1, 0.4 * 0.95, accuracy: 1e-12)
        XCTAssertEqual(c.learningRate(epoch: 49), c.learningRate)
        XCTAssertEqual(c.learningRate(epoch: 50), c.learningRate / 10, accuracy: 1e-12)
        c.deepSupervision = false
        XCTAssertEqual(c.eta(epoch: 0).0, 0)
        let sampler = try PatchSampler(
            volumes: [syntheticVolume(seed: 1)], patch: GridSize(x: 8, y: 12, z: 8), padValue: -9, seed: 5,
            preprocessing: .default)
        let (a, la) = try sampler.patch(17)
        let (b, lb) = try sampler.patch(17)
        XCTAssertEqual(a.storage.array, b.storage.array)
        XCTAssertEqual(la, lb)
        XCTAssertNotEqual(try sampler.patch(18).input.storage.array, a.storage.array)
    }

    /// A volume whose intensity is its x coordinate and whose label marks x ≥ 16.
    func rampVolume() -> TrainingVolume {
        let size = GridSize(x: 32, y: 28, z: 20)
        var intensities = [Float](), labels = [UInt8]()
        for _ in 0..<size.z {
            for _ in 0..<size.y {
                for x in 0..<size.x {
                    intensities.append(Float(x))
                    labels.append(x >= 16 ? 1 : 0)
                }
            }
        }
        return TrainingVolume(name: "ramp", size: size, intensities: intensities, labels: labels)
    }

    /// Without augmentation a patch is the volume's voxels at integer offsets, padding outside.
    func testUnaugmentedPatchesCopyTheVolume() throws {
        let volume = syntheticVolume(seed: 4), s = volume.size
        let patch = GridSize(x: 12, y: 8, z: 8)
        let sampler = try PatchSampler(
            volumes: [volume], patch: patch, padValue: -9, seed: 2, spatialAugmentation: .none, preprocessing: .default)
        for index in 0..<10 {
            let (input, labels) = try sampler.patch(index)
            let values = input.storage.array
            // Find the offset: the patch must equal the volume shifted by one integer vector.
            var matched = false
            search: for oz in -patch.z...s.z {
                for oy in -patch.y...s.y {
                    for ox in -patch.x...s.x {
                        var same = true
                        check: for z in 0..<patch.z {
                            for y in 0..<patch.y {
                                for x in 0..<patch.x {
                                    let (vx, vy, vz) = (ox + x, oy + y, oz + z)
                                    let o = (z * patch.y + y) * patch.x + x
                                    let inside = vx >= 0 && vx < s.x && vy >= 0 && vy < s.y && vz >= 0 && vz < s.z
                                    let i = (vz * s.y + vy) * s.x + vx
                                    if values[o] != (inside ? volume.intensities[i] : -9)
                                        || labels[o] != (inside ? volume.labels[i] : 0)
                                    {
                                        same = false
                                        break check
                                    }
                                }
                            }
                        }
                        if same { matched = true; break search }
                    }
                }
            }
            XCTAssertTrue(matched, "patch \(index) is not a shifted copy of the volume")
        }
    }

    /// The anatomical default never mirrors: on a volume whose intensity grows with x, every
    /// patch's intensity grows with the patch's x (rotations ≤ 15° keep the sign); the
    /// symmetric preset mirrors about half of them.
    func testAnatomicalAugmentationKeepsLeftAndRight() throws {
        let volume = rampVolume(), patch = GridSize(x: 8, y: 8, z: 8)
        func decreasingShare(_ augmentation: SpatialAugmentation) throws -> Double {
            let sampler = try PatchSampler(
                volumes: [volume], patch: patch, liverFraction: 1, padValue: -100, seed: 9,
                spatialAugmentation: augmentation, preprocessing: .default)
            var decreasing = 0, measured = 0
            for index in 0..<200 {
                let v = try sampler.patch(index).input.storage.array
                // A pair of in-volume neighbours along x at the patch centre row.
                let o = (4 * patch.y + 4) * patch.x + 3
                guard v[o] > -100, v[o + 1] > -100 else { continue }
                measured += 1
                if v[o + 1] < v[o] { decreasing += 1 }
            }
            XCTAssertGreaterThan(measured, 100)
            return Double(decreasing) / Double(measured)
        }
        XCTAssertEqual(try decreasingShare(.anatomical), 0)
        // Four turns × mirror: the patch's x runs along the volume's −x in 2 of the 8.
        XCTAssertEqual(try decreasingShare(.symmetric), 0.25, accuracy: 0.1)
    }

    /// Rotation and scaling move voxels but keep labels on their anatomy: on the ramp the
    /// label is 1 exactly where the interpolated x (the intensity) is at least 15.5 (the
    /// trilinear label fraction crosses ½ midway between x = 15 and 16).
    func testGeometricAugmentationKeepsLabelsOnTheirVoxels() throws {
        let volume = rampVolume(), patch = GridSize(x: 12, y: 12, z: 8)
        let sampler = try PatchSampler(
            volumes: [volume], patch: patch, liverFraction: 1, padValue: -100, seed: 3,
            spatialAugmentation: .anatomical, preprocessing: .default)
        var changedGeometry = false
        for index in 0..<40 {
            let (input, labels) = try sampler.patch(index)
            let v = input.storage.array
            for o in v.indices where v[o] > -100 {
                if abs(v[o] - v[o].rounded()) > 1e-3 { changedGeometry = true }
                if abs(v[o] - 15.5) > 1e-3 {
                    XCTAssertEqual(labels[o], v[o] > 15.5 ? 1 : 0, "patch \(index) voxel \(o) value \(v[o])")
                }
            }
        }
        XCTAssertTrue(changedGeometry, "rotations and scaling should sample between voxels")
    }

    /// The elastic warp, read back exactly: three volumes whose intensity is their x, y or z
    /// coordinate (trilinear sampling reproduces a linear function) give the volume position
    /// each patch voxel read. Against the same patches without the warp (its draws have their
    /// own stream, so anchors and placements agree), the displacement must stay within the
    /// control points' largest move (B-spline weights are a convex combination), vary
    /// smoothly, never fold (the mapping's Jacobian determinant stays positive), and carry
    /// the labels with the voxels.
    func testElasticWarpIsBoundedSmoothAndFoldFree() throws {
        let size = GridSize(x: 40, y: 40, z: 40), patch = GridSize(x: 16, y: 16, z: 12)
        func coordinateVolume(_ axis: Int) -> TrainingVolume {
            var intensities = [Float](), labels = [UInt8]()
            for z in 0..<size.z {
                for y in 0..<size.y {
                    for x in 0..<size.x {
                        intensities.append(Float([x, y, z][axis]))
                        labels.append(x >= 20 ? 1 : 0)
                    }
                }
            }
            return TrainingVolume(name: "coordinate \(axis)", size: size, intensities: intensities, labels: labels)
        }
        let volumes = (0..<3).map(coordinateVolume)
        var warped = SpatialAugmentation.none
        let elastic = ElasticDeformation(controlSpacing: 8, maxDisplacement: 3)
        warped.elastic = elastic
        func sampler(_ volume: TrainingVolume, _ augmentation: SpatialAugmentation) throws -> PatchSampler {
            try PatchSampler(
                volumes: [volume], patch: patch, liverFraction: 1, padValue: -100, seed: 11, spatialAugmentation: augmentation,
                preprocessing: .default)
        }
        let plain = try volumes.map { try sampler($0, .none) }, deformed = try volumes.map { try sampler($0, warped) }
        var largest = 0.0, checkedVoxels = 0, checkedJacobians = 0
        for index in 0..<12 {
            let before = try plain.map { try $0.patch(index) }, after = try deformed.map { try $0.patch(index) }
            // Volume positions per voxel, or nil where padding or the clamped border distorts them.
            let position: [SIMD3<Double>?] = (0..<patch.voxelCount).map { o in
                let p = SIMD3<Double>((0..<3).map { Double(after[$0].input.storage.array[o]) })
                return (0..<3).allSatisfy({ p[$0] > 0.01 && p[$0] < Double(size.x - 1) - 0.01 }) ? p : nil
            }
            for o in 0..<patch.voxelCount {
                let unwarped = SIMD3<Double>((0..<3).map { Double(before[$0].input.storage.array[o]) })
                guard let p = position[o], (0..<3).allSatisfy({ unwarped[$0] >= 0 }) else { continue }
                let u = p - unwarped
                largest = max(largest, u.x.magnitude, u.y.magnitude, u.z.magnitude)
                XCTAssertLessThanOrEqual(max(u.x.magnitude, u.y.magnitude, u.z.magnitude), elastic.maxDisplacement + 1e-3)
                // Labels follow the voxels: 1 exactly where the warped x is past 19.5.
                if abs(p.x - 19.5) > 1e-3 { XCTAssertEqual(after[0].labels[o], p.x > 19.5 ? 1 : 0) }
                checkedVoxels += 1
                // Forward differences along x, y, z from voxel o.
                let (x, y, z) = (o % patch.x, (o / patch.x) % patch.y, o / (patch.x * patch.y))
                guard x + 1 < patch.x, y + 1 < patch.y, z + 1 < patch.z,
                    let px = position[o + 1], let py = position[o + patch.x], let pz = position[o + patch.x * patch.y]
                else { continue }
                let (jx, jy, jz) = (px - p, py - p, pz - p)
                // A neighbour's move differs by at most 2 · largest move / spacing per axis.
                for column in [jx - SIMD3(1, 0, 0), jy - SIMD3(0, 1, 0), jz - SIMD3(0, 0, 1)] {
                    XCTAssertLessThanOrEqual(
                        max(column.x.magnitude, column.y.magnitude, column.z.magnitude),
                        2 * elastic.maxDisplacement / Double(elastic.controlSpacing) + 1e-3)
                }
                let determinant =
                    jx.x * (jy.y * jz.z - jy.z * jz.y) - jy.x * (jx.y * jz.z - jx.z * jz.y) + jz.x * (jx.y * jy.z - jx.z * jy.y)
                XCTAssertGreaterThan(determinant, 0, "patch \(index) folds at voxel \(o)")
                checkedJacobians += 1
            }
        }
        XCTAssertGreaterThan(checkedVoxels, 10_000)
        XCTAssertGreaterThan(checkedJacobians, 5_000)
        XCTAssertGreaterThan(largest, elastic.maxDisplacement / 3, "the warp should move voxels")
        // Moves that could fold are refused.
        warped.elastic = ElasticDeformation(controlSpacing: 8, maxDisplacement: 3.2)
        XCTAssertThrowsError(try sampler(volumes[0], warped))
    }

    /// Field-of-view crops: with probability 1 along z, part of a patch that would lie in the
    /// volume is padding, always on the far side of a plane through the liver's z extent.
    func testFieldOfViewCropsCutThroughTheLiver() throws {
        let volume = syntheticVolume(seed: 6), patch = GridSize(x: 8, y: 8, z: 32)
        var crop = SpatialAugmentation.none
        crop.fieldOfViewCropProbability = [0, 0, 1]
        let cropped = try PatchSampler(
            volumes: [volume], patch: patch, liverFraction: 1, padValue: -9, seed: 4, spatialAugmentation: crop,
            preprocessing: .default)
        let plain = try PatchSampler(
            volumes: [volume], patch: patch, liverFraction: 1, padValue: -9, seed: 4, spatialAugmentation: .none,
            preprocessing: .default)
        let extent = try XCTUnwrap(volume.liverExtent)[2]
        var cut = 0
        for index in 0..<30 {
            let a = try plain.patch(index), b = try cropped.patch(index)
            let x = a.input.storage.array, y = b.input.storage.array
            // Same draws before the crop: voxels are equal or turned into padding.
            var paddedLayers = Set<Int>()
            for o in x.indices where x[o] != y[o] {
                XCTAssertEqual(y[o], -9)
                XCTAssertEqual(b.labels[o], 0)
                paddedLayers.insert(o / (patch.x * patch.y))
            }
            // The padded layers form one slab at the patch's top or bottom.
            if let low = paddedLayers.min(), let high = paddedLayers.max() {
                cut += 1
                XCTAssertEqual(paddedLayers.count, high - low + 1)
                XCTAssert(paddedLayers.contains(0) || paddedLayers.contains(patch.z - 1) || high - low + 1 < patch.z)
            }
            XCTAssertGreaterThan(b.labels.reduce(0) { $0 + Int($1) }, 0, "the anchor's side keeps liver")
        }
        XCTAssertGreaterThan(cut, 10)
        XCTAssertGreaterThan(extent.count, 1)
    }

    /// Intensity augmentation, checked in HU against the definition HU′ = clamp(scale·HU + shift, window).
    func testIntensityAugmentationIsAnAffineHUChangeClippedToTheWindow() throws {
        let p = Preprocessing(spacing: [1, 1, 1], orientation: AxisCodes("RAS")!, huWindow: (-200, 300), mean: 50, std: 125)
        // Normalised values of HU −200 … 300 (inside the window) in the synthetic layout.
        let base = syntheticVolume(seed: 2)
        let volume = TrainingVolume(
            name: "hu", size: base.size,
            intensities: base.intensities.map { p.normalise(Float(50 + 125 * Double($0) / 2)) },
            labels: base.labels)
        let patch = GridSize(x: 8, y: 12, z: 8)
        let plain = try PatchSampler(
            volumes: [volume], patch: patch, padValue: p.normalise(-.infinity), seed: 5, preprocessing: .default)
        let fixed = try PatchSampler(
            volumes: [volume], patch: patch, padValue: p.normalise(-.infinity), seed: 5,
            intensityAugmentation: IntensityAugmentation(shiftHU: -60 ... -60, scale: 1.25...1.25), preprocessing: p)
        for index in 0..<6 {
            let (x, labels) = try plain.patch(index)
            let (y, augmentedLabels) = try fixed.patch(index)
            XCTAssertEqual(labels, augmentedLabels, "augmentation must not move voxels")
            for (u, v) in zip(x.storage.array, y.storage.array) {
                let hu = Double(u) * 125 + 50
                let expected = (min(max(1.25 * hu - 60, -200), 300) - 50) / 125
                XCTAssertEqual(Double(v), expected, accuracy: 1e-5)
            }
        }
        // Random ranges: each patch's change is one (scale, shift) inside the ranges.
        let random = try PatchSampler(
            volumes: [volume], patch: patch, padValue: p.normalise(-.infinity), seed: 5,
            intensityAugmentation: IntensityAugmentation(shiftHU: -70...30, scale: 0.9...1.1), preprocessing: p)
        var shifts: [Double] = []
        for index in 0..<20 {
            let x = try plain.patch(index).input.storage.array.map { Double($0) * 125 + 50 }
            let y = try random.patch(index).input.storage.array.map { Double($0) * 125 + 50 }
            // Two unclipped voxels far apart in HU fix scale and shift.
            let inner = x.indices.filter { x[$0] > -150 && x[$0] < 200 && y[$0] > -199 && y[$0] < 299 }
            guard let i = inner.min(by: { x[$0] < x[$1] }), let j = inner.max(by: { x[$0] < x[$1] }), x[j] - x[i] > 100 else {
                continue
            }
            let scale = (y[j] - y[i]) / (x[j] - x[i]), shift = y[i] - scale * x[i]
            XCTAssert((0.9 - 1e-3...1.1 + 1e-3).contains(scale), "scale \(scale)")
            XCTAssert((-70.5...30.5).contains(shift), "shift \(shift)")
            shifts.append(shift)
        }
        XCTAssertGreaterThan(shifts.count, 10)
        XCTAssertGreaterThan(shifts.max()! - shifts.min()!, 30, "shifts should vary between patches")
    }

    func testModelFileRoundTripOfTrainedWeights() throws {
        let trainer = try Trainer(configuration: tinyConfiguration())
        let model = try trainer.model(extraMetadata: [("provenance", .object([("note", .string("test"))]))])
        let loaded = try Model(bytes: model.fileBytes())
        XCTAssertEqual(loaded.metadata["provenance"]?["note"], .string("test"))
        for (a, b) in zip(loaded.network.parameters, model.network.parameters) {
            XCTAssertEqual(a.name, b.name)
            XCTAssertEqual(a.values, b.values)
        }
    }
}

final class CRFMetadataTests: XCTestCase {
    func testCRFSectionRoundTrips() throws {
        var p = CRFParameters()
        p.mode = .volume3d
        p.iterations = 7
        p.bilateralWeight = 2.5
        p.thetaBetaHU = 21
        p.normalisation = .after
        p.restrictToUncertainRegion = false
        XCTAssertEqual(try CRFParameters(modelMetadata: try parseJSON(Array(p.modelMetadata.serialized.utf8))), p)
    }
}

/// A network small enough to train in a unit test (3×3×3 kernels, 4–8 channels) on 24×24×16
/// patches, 10 per epoch, two threads.
func tinyTrainingConfiguration(preprocessing: Preprocessing) -> TrainingConfiguration {
    var c = TrainingConfiguration(preprocessing: preprocessing)
    c.architecture = DSNArchitecture(
        inChannels: 1, convChannels: [4, 4, 8, 8, 8, 8],
        convKernels: [
            GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3),
            GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3), GridSize(x: 1, y: 1, z: 1),
        ],
        mainDeconvChannels: 4, branch2DeconvChannels: 4, classes: 2)
    c.patch = GridSize(x: 24, y: 24, z: 16)
    c.iterationsPerEpoch = 10
    c.learningRate = 0.02
    c.threads = 2
    c.seed = 7
    return c
}
