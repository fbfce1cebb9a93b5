import XCTest
@testable import LiversegNetwork
@testable import LiversegSupport

/// A DSN small enough for finite differences, with every kernel shape the layers support.
let smallArchitecture = DSNArchitecture(
    inChannels: 1, convChannels: [2, 2, 3, 3, 2, 2],
    convKernels: [
        GridSize(x: 3, y: 3, z: 3), GridSize(x: 3, y: 1, z: 3), GridSize(x: 1, y: 3, z: 3),
        GridSize(x: 3, y: 3, z: 1), GridSize(x: 3, y: 3, z: 3), GridSize(x: 1, y: 1, z: 1),
    ],
    mainDeconvChannels: 2, branch2DeconvChannels: 3, classes: 2)

/// Backward passes against central finite differences of the forward passes, in float64.
final class GradientTests: XCTestCase {
    var seed: UInt64 = 99

    func random(_ n: Int, scale: Double = 1) -> [Double] {
        (0..<n).map { _ in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return (Double(seed >> 11) / Double(1 << 53) * 2 - 1) * scale
        }
    }

    func tensor(_ values: [Double], _ channels: Int, _ size: GridSize) throws -> Tensor<Double> {
        Tensor(channels: channels, size: size, storage: try Buffer(values))
    }

    /// ⟨r, f(x)⟩ for a fixed random r: a scalar whose gradient through f is f's backward of r.
    func project(_ y: Tensor<Double>, _ r: [Double]) -> Double { zip(y.storage.array, r).map(*).reduce(0, +) }

    /// Checks analytic against numeric derivatives at a few coordinates of `values`.
    func checkDerivatives(
        _ values: [Double], analytic: [Double], probes: Int = 12, what: String,
        _ loss: ([Double]) throws -> Double
    ) throws {
        let eps = 1e-6
        for _ in 0..<probes {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let i = Int(seed >> 33) % values.count
            var plus = values, minus = values
            plus[i] += eps; minus[i] -= eps
            let numeric = (try loss(plus) - loss(minus)) / (2 * eps)
            let tolerance = 1e-6 * max(1, abs(numeric))
            XCTAssertEqual(analytic[i], numeric, accuracy: tolerance, "\(what)[\(i)]")
        }
    }

    func testConvolutionBackward() throws {
        for algorithm in ConvolutionAlgorithm.allCases {
            try checkConvolutionBackward(algorithm)
        }
    }

    func checkConvolutionBackward(_ algorithm: ConvolutionAlgorithm) throws {
        for (cin, cout, size, k, relu) in [
            (2, 3, GridSize(x: 5, y: 4, z: 3), GridSize(x: 3, y: 5, z: 3), true),
            (3, 2, GridSize(x: 6, y: 3, z: 4), GridSize(x: 1, y: 1, z: 1), true),
            (1, 2, GridSize(x: 7, y: 6, z: 5), GridSize(x: 5, y: 3, z: 1), false),
            (2, 2, GridSize(x: 11, y: 10, z: 9), GridSize(x: 9, y: 9, z: 7), true),
            (3, 2, GridSize(x: 9, y: 8, z: 7), GridSize(x: 7, y: 7, z: 5), false),
        ] {
            let x = random(cin * size.voxelCount), w = random(cout * cin * k.voxelCount, scale: 0.5), b = random(cout)
            let r = random(cout * size.voxelCount)
            func layer(_ w: [Double], _ b: [Double]) -> Convolution3D<Double> {
                var layer = Convolution3D(inChannels: cin, outChannels: cout, kernel: k, weight: w, bias: b, relu: relu)
                layer.algorithm = algorithm
                return layer
            }
            let input = try tensor(x, cin, size)
            let y = try layer(w, b).forward(input, threads: 2)
            let g = try layer(w, b).backward(input: input, output: y, outputGradient: try tensor(r, cout, size), threads: 2)
            try checkDerivatives(x, analytic: g.input.storage.array, what: "\(algorithm) conv dX") {
                project(try layer(w, b).forward(try tensor($0, cin, size), threads: 1), r)
            }
            try checkDerivatives(w, analytic: g.weight, what: "\(algorithm) conv dW") {
                project(try layer($0, b).forward(input, threads: 1), r)
            }
            try checkDerivatives(b, analytic: g.bias, probes: cout, what: "conv db") {
                project(try layer(w, $0).forward(input, threads: 1), r)
            }
        }
    }

    func testTransposedConvolutionBackward() throws {
        let (cin, cout, size) = (3, 2, GridSize(x: 4, y: 3, z: 2))
        let x = random(cin * size.voxelCount), w = random(cin * cout * 27, scale: 0.5), b = random(cout)
        let r = random(cout * size.voxelCount * 8)
        func layer(_ w: [Double], _ b: [Double]) -> TransposedConvolution3D<Double> {
            TransposedConvolution3D(inChannels: cin, outChannels: cout, weight: w, bias: b, relu: true)
        }
        let input = try tensor(x, cin, size)
        let y = try layer(w, b).forward(input, threads: 2)
        let g = try layer(w, b).backward(
            input: input, output: y, outputGradient: try tensor(r, cout, size.multiplied(by: 2)),
            threads: 2)
        try checkDerivatives(x, analytic: g.input.storage.array, what: "deconv dX") {
            project(try layer(w, b).forward(try tensor($0, cin, size), threads: 1), r)
        }
        try checkDerivatives(w, analytic: g.weight, what: "deconv dW") {
            project(try layer($0, b).forward(input, threads: 1), r)
        }
        try checkDerivatives(b, analytic: g.bias, probes: cout, what: "deconv db") {
            project(try layer(w, $0).forward(input, threads: 1), r)
        }
    }

    func testMaxPoolAndCrossEntropyBackward() throws {
        let size = GridSize(x: 4, y: 6, z: 2)
        let x = random(3 * size.voxelCount)
        let r = random(3 * size.voxelCount / 8)
        let pooled = try MaxPool2.backward(
            input: try tensor(x, 3, size), outputGradient: try tensor(r, 3, size.divided(by: 2)),
            threads: 2)
        try checkDerivatives(x, analytic: pooled.storage.array, what: "pool dX") {
            project(try MaxPool2.forward(try tensor($0, 3, size), threads: 1), r)
        }
        let scores = random(3 * size.voxelCount, scale: 3)
        let labels: [UInt8] = (0..<size.voxelCount).map { v -> UInt8 in UInt8(v % 3) }
        let (_, g) = try Softmax.crossEntropy(try tensor(scores, 3, size), labels: labels, threads: 2)
        try checkDerivatives(scores, analytic: g.storage.array, what: "cross-entropy ds") {
            try Softmax.crossEntropy(try tensor($0, 3, size), labels: labels, threads: 1).loss
        }
    }

    /// Inference and training run one graph: the losses training reports are the cross-entropies
    /// of the probabilities inference returns, and the fused probability is their weighted sum.
    func testInferenceAndTrainingShareTheGraph() throws {
        let arch = smallArchitecture
        var parameters: [Double] = []
        for tensor in arch.parameterTable { parameters += random(tensor.count, scale: 0.7) }
        let size = GridSize(x: 8, y: 12, z: 4)
        let input = try tensor(random(size.voxelCount), 1, size)
        let labels: [UInt8] = (0..<size.voxelCount).map { v -> UInt8 in UInt8((v * 5 + v / 7) % 2) }
        let network = try DSNNetwork<Double>(architecture: arch, parameters: parameters)
        let outputs = try network.forward(input, threads: 2)
        let (loss, _) = try network.lossAndGradients(input, labels: labels, eta: (0.3, 0.4), threads: 2)
        func crossEntropy(_ p: Buffer<Double>) -> Double {
            -zip(p.array, labels).map { log($1 == 1 ? $0 : 1 - $0) }.reduce(0, +) / Double(labels.count)
        }
        XCTAssertEqual(loss.main, crossEntropy(outputs.main), accuracy: 1e-12)
        XCTAssertEqual(loss.branch1, crossEntropy(outputs.branch1), accuracy: 1e-12)
        XCTAssertEqual(loss.branch2, crossEntropy(outputs.branch2), accuracy: 1e-12)
        let fused = try network.fusedProbability(input, weights: (main: 0.5, branch1: 0.2, branch2: 0.3), threads: 3)
        let (main, branch1, branch2) = (outputs.main.array, outputs.branch1.array, outputs.branch2.array)
        for (v, p) in fused.array.enumerated() {
            XCTAssertEqual(p, 0.5 * main[v] + 0.2 * branch1[v] + 0.3 * branch2[v], accuracy: 1e-12, "voxel \(v)")
        }
    }

    /// The whole network's eq. 3 data term, every parameter tensor probed.
    func testNetworkGradients() throws {
        let arch = smallArchitecture
        let table = arch.parameterTable
        var parameters: [Double] = []
        for tensor in table { parameters += random(tensor.count, scale: 0.7) }
        let size = GridSize(x: 8, y: 8, z: 4)
        let input = try tensor(random(size.voxelCount), 1, size)
        let labels: [UInt8] = (0..<size.voxelCount).map { v -> UInt8 in UInt8((v * 7 + v / 5) % 2) }
        let eta: (Double, Double) = (0.3, 0.4)
        let network = try DSNNetwork<Double>(architecture: arch, parameters: parameters)
        let (loss, gradients) = try network.lossAndGradients(input, labels: labels, eta: eta, threads: 2)
        let expected: Double = loss.main + 0.3 * loss.branch1 + 0.4 * loss.branch2
        XCTAssertEqual(loss.total, expected, accuracy: 1e-12)
        XCTAssertEqual(gradients.count, arch.parameterCount)
        XCTAssertEqual(network.flatParameters, parameters)
        for tensor in table {
            try checkDerivatives(
                Array(parameters[tensor.range]), analytic: Array(gradients[tensor.range]), probes: 4, what: tensor.name
            ) { values in
                var p = parameters
                p.replaceSubrange(tensor.range, with: values)
                return try DSNNetwork<Double>(architecture: arch, parameters: p)
                    .lossAndGradients(input, labels: labels, eta: eta, threads: 1).0.total
            }
        }
        // Without deep supervision the branch terms drop out of the loss and the gradient.
        let (plain, plainGradients) = try network.lossAndGradients(input, labels: labels, eta: (0, 0), threads: 2)
        XCTAssertEqual(plain.total, plain.main)
        let branch1 = table.first { $0.name == "branch1.deconv.weight" }!
        XCTAssertTrue(plainGradients[branch1.range].allSatisfy { $0 == 0 })
    }
}

final class WorkspaceTests: XCTestCase {
    /// Passes that reuse the workspace's memory must not read what an earlier pass left
    /// there: with every kept block filled with NaN bytes between passes, the forward pass
    /// and the loss and gradients are bit-identical to the first pass's (which ran on fresh
    /// memory). The input, 64×64×64, makes the activations pooled buffers (≥ 1 MiB).
    func testPassesOnReusedMemoryEqualPassesOnFreshMemory() throws {
        let arch = smallArchitecture
        var state: UInt64 = 5
        func random() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Double(state >> 11) / Double(1 << 53) * 2 - 1)
        }
        let parameters = (0..<arch.parameterCount).map { _ in random() * 0.5 }
        let size = GridSize(x: 64, y: 64, z: 64)
        let input = Tensor<Float>(channels: 1, size: size, storage: try Buffer((0..<size.voxelCount).map { _ in random() }))
        let labels = (0..<size.voxelCount).map { UInt8($0 % 3 == 0 ? 1 : 0) }
        let network = try DSNNetwork<Float>(architecture: arch, parameters: parameters)
        func pass() throws -> [Float] {
            let outputs = try network.forward(input, threads: 2)
            let (loss, gradients) = try network.lossAndGradients(input, labels: labels, eta: (0.3, 0.4), threads: 2)
            return outputs.main.array + outputs.branch1.array + outputs.branch2.array + [loss.total] + gradients
        }
        let fresh = try pass()
        XCTAssertGreaterThan(network.workspace.keptBytes, 0, "the passes' activations were not pooled")
        network.workspace.fillKept(with: 0xFF)
        let reused = try pass()
        XCTAssertTrue(fresh.elementsEqual(reused) { $0.bitPattern == $1.bitPattern })
    }
}
