import XCTest
import LiversegSupport
import LiversegVolume
import LiversegNetwork
@testable import LiversegPipeline

/// A tiny DSN for ensemble tests (kernels of 3 and 1, two or three channels).
private let tinyArchitecture = DSNArchitecture(
    inChannels: 1, convChannels: [2, 2, 3, 3, 2, 2],
    convKernels: [
        GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 3),
        GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 3, z: 1), GridSize(x: 1, y: 1, z: 1),
    ],
    mainDeconvChannels: 2, branch2DeconvChannels: 2, classes: 2)

/// A single-network model with seeded weights (its class scores spread over a wide range)
/// on an isotropic grid of `spacing` mm.
private func tinyModel(seed: UInt64, spacing: Double, tau: [Double]) throws -> Model {
    var generator = SeededGenerator(seed: seed)
    let parameters = (0..<tinyArchitecture.parameterCount).map { _ in Float.random(in: -1...1, using: &generator) }
    var preprocessing = Preprocessing.default
    preprocessing.spacing = [spacing, spacing, spacing]
    return try Model(
        network: try DSNNetwork(architecture: tinyArchitecture, parameters: parameters), preprocessing: preprocessing,
        fusionTau: tau,
        extraMetadata: [("crf", .object([("n_iterations", .number(2))])), ("provenance", .string("seed \(seed)"))])
}

final class EnsembleTests: XCTestCase {
    func testEnsembleFileRoundTripsEveryNetwork() throws {
        let members = [try tinyModel(seed: 1, spacing: 3, tau: [0.1, 0.1]), try tinyModel(seed: 2, spacing: 5, tau: [0.3, 0])]
        let ensemble = try Model(ensembleOf: members, extraMetadata: [("ensemble", .string("test"))])
        let loaded = try Model(bytes: ensemble.fileBytes())
        XCTAssertEqual(loaded.formatVersion, Model.ensembleFormatVersion)
        XCTAssertEqual(loaded.networks.count, 2)
        for (network, member) in zip(loaded.networks, members) {
            XCTAssertEqual(network.preprocessing, member.preprocessing)
            XCTAssertEqual(network.fusionTau, member.fusionTau)
            XCTAssertEqual(network.network.parameters.map(\.values), member.network.parameters.map(\.values))
            XCTAssertEqual(network.section["provenance"], member.metadata["provenance"])
        }
        XCTAssertEqual(loaded.metadata["crf"], members[0].metadata["crf"])
        XCTAssertEqual(loaded.metadata["ensemble"], .string("test"))
        XCTAssertNil(loaded.metadata["provenance"], "a network's provenance stays with its network")
        // One network still writes format version 1, which 0.4 libraries read.
        XCTAssertEqual(try Model(bytes: members[0].fileBytes()).formatVersion, Model.singleNetworkFormatVersion)
        // An ensemble of an ensemble and a model is flat.
        XCTAssertEqual(try Model(ensembleOf: [ensemble, members[0]]).networks.count, 3)
    }

    func testEnsembleNeedsTwoToEightNetworks() throws {
        let one = try tinyModel(seed: 3, spacing: 4, tau: [0.1, 0.1])
        XCTAssertThrowsError(try Model(ensembleOf: [one]))
        XCTAssertThrowsError(try Model(ensembleOf: Array(repeating: one, count: Model.maximumNetworks + 1)))
        XCTAssertEqual(try Model(ensembleOf: Array(repeating: one, count: Model.maximumNetworks)).networks.count, 8)
    }

    /// The ensemble's probability is the mean of its networks' probabilities, each run
    /// alone, bit for bit ((a + b) · ½ is exact rounding of (a + b) / 2); so is the mask
    /// thresholded slab by slab when no probability is asked for.
    func testEnsembleSegmentsTheMeanOfItsNetworks() throws {
        let members = [
            try tinyModel(seed: 4, spacing: 3, tau: [0.1, 0.1]), try tinyModel(seed: 5, spacing: 4.5, tau: [0.2, 0.2]),
        ]
        let ensemble = try Model(ensembleOf: members)
        let size = GridSize(x: 23, y: 19, z: 11)
        var generator = SeededGenerator(seed: 6)
        var voxels = (0..<size.voxelCount).map { _ in Float.random(in: -300...400, using: &generator) }
        var options = SegmentationOptions()
        options.crf = .off
        options.postProcessing = []
        options.threads = 2
        try voxels.withUnsafeMutableBufferPointer { v in
            let volume = VolumeInput(voxels: .float32(v.baseAddress!), size: size, spacing: [2, 2.5, 4], ijkToRAS: nil)
            let alone = try members.map { try XCTUnwrap($0.segment(volume, options: options, keepProbability: true).probability) }
            let together = try ensemble.segment(volume, options: options, keepProbability: true)
            let mean = zip(alone[0], alone[1]).map { ($0 + $1) / 2 }
            XCTAssertNotEqual(alone[0], alone[1])
            XCTAssertEqual(together.probability, mean)
            XCTAssertEqual(together.mask, mean.map { $0 >= 0.5 ? 1 : 0 })
            XCTAssertEqual(try ensemble.segment(volume, options: options).mask, together.mask)
            let liver = together.mask.filter { $0 == 1 }.count
            XCTAssert(liver > 0 && liver < size.voxelCount, "the test needs both labels (\(liver) liver voxels)")
        }
    }
}
