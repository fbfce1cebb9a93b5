import XCTest
@testable import LiversegCore

final class TrainingTests: XCTestCase {
    /// A synthetic labelled volume: a bright ellipsoid ("liver") in darker noise.
    func syntheticVolume(seed: UInt64) -> TrainingVolume {
        let size = GridSize(x: 32, y: 32, z: 20)
        var rng = SeededGenerator(seed: seed)
        var intensities = [Float](), labels = [UInt8]()
        for z in 0..<size.z { for y in 0..<size.y { for x in 0..<size.x {
            let d = pow(Double(x - 15) / 10, 2) + pow(Double(y - 17) / 9, 2) + pow(Double(z - 10) / 6, 2)
            let inside = d < 1
            labels.append(inside ? 1 : 0)
            intensities.append(Float((inside ? 1.0 : -0.5) + 0.3 * rng.gaussian()))
        } } }
        return TrainingVolume(name: "synthetic", size: size, intensities: intensities, labels: labels)
    }

    func tinyConfiguration() -> TrainingConfiguration {
        var c = TrainingConfiguration(preprocessing: Preprocessing(spacing: [1, 1, 1], orientation: AxisCodes("RAS")!,
                                                                   huWindow: (-1000, 1000), mean: 0, std: 1))
        c.architecture = DSNArchitecture(
            inChannels: 1, convChannels: [4, 4, 8, 8, 8, 8],
            convKernels: [GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3),
                          GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3), GridSize(x: 1, y: 1, z: 1)],
            mainDeconvChannels: 4, branch2DeconvChannels: 4, classes: 2)
        c.patch = GridSize(x: 24, y: 24, z: 16)
        c.iterationsPerEpoch = 10
        c.learningRate = 0.02
        c.threads = 2
        c.seed = 7
        return c
    }

    func testTinyNetworkLearnsASyntheticOrgan() throws {
        let c = tinyConfiguration()
        let sampler = try PatchSampler(volumes: [syntheticVolume(seed: 1)], patch: c.patch, padValue: -0.5, seed: 3)
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
        let sampler = try PatchSampler(volumes: [syntheticVolume(seed: 1)], patch: c.patch, padValue: -0.5, seed: 3)
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
        let sampler = try PatchSampler(volumes: [syntheticVolume(seed: 1)], patch: GridSize(x: 8, y: 12, z: 8), padValue: -9, seed: 5)
        let (a, la) = try sampler.patch(17)
        let (b, lb) = try sampler.patch(17)
        XCTAssertEqual(a.storage.array, b.storage.array)
        XCTAssertEqual(la, lb)
        XCTAssertNotEqual(try sampler.patch(18).input.storage.array, a.storage.array)
    }

    /// Intensity augmentation, checked in HU against the definition HU′ = clamp(scale·HU + shift, window).
    func testIntensityAugmentationIsAnAffineHUChangeClippedToTheWindow() throws {
        let p = Preprocessing(spacing: [1, 1, 1], orientation: AxisCodes("RAS")!, huWindow: (-200, 300), mean: 50, std: 125)
        // Normalised values of HU −200 … 300 (inside the window) in the synthetic layout.
        let base = syntheticVolume(seed: 2)
        let volume = TrainingVolume(name: "hu", size: base.size,
                                    intensities: base.intensities.map { p.normalise(Float(50 + 125 * Double($0) / 2)) },
                                    labels: base.labels)
        let patch = GridSize(x: 8, y: 12, z: 8)
        let plain = try PatchSampler(volumes: [volume], patch: patch, padValue: p.normalise(-.infinity), seed: 5)
        let fixed = try PatchSampler(volumes: [volume], patch: patch, padValue: p.normalise(-.infinity), seed: 5,
                                     intensityAugmentation: (IntensityAugmentation(shiftHU: -60 ... -60, scale: 1.25...1.25), p))
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
        let random = try PatchSampler(volumes: [volume], patch: patch, padValue: p.normalise(-.infinity), seed: 5,
                                      intensityAugmentation: (IntensityAugmentation(shiftHU: -70...30, scale: 0.9...1.1), p))
        var shifts: [Double] = []
        for index in 0..<20 {
            let x = try plain.patch(index).input.storage.array.map { Double($0) * 125 + 50 }
            let y = try random.patch(index).input.storage.array.map { Double($0) * 125 + 50 }
            // Two unclipped voxels far apart in HU fix scale and shift.
            let inner = x.indices.filter { x[$0] > -150 && x[$0] < 200 && y[$0] > -199 && y[$0] < 299 }
            guard let i = inner.min(by: { x[$0] < x[$1] }), let j = inner.max(by: { x[$0] < x[$1] }), x[j] - x[i] > 100 else { continue }
            let scale = (y[j] - y[i]) / (x[j] - x[i]), shift = y[i] - scale * x[i]
            XCTAssert((0.9 - 1e-3 ... 1.1 + 1e-3).contains(scale), "scale \(scale)")
            XCTAssert((-70.5 ... 30.5).contains(shift), "shift \(shift)")
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
