import LiversegSupport

/// The liver probability maps of one forward pass, each [Z, Y, X] on the input grid.
public struct DSNOutputs<Scalar: NetworkScalar>: Sendable {
    /// Main output (deconv10 → softmax).
    public let main: Buffer<Scalar>
    /// Deep-supervision branch 1 (after the first pool).
    public let branch1: Buffer<Scalar>
    /// Deep-supervision branch 2 (after the second pool).
    public let branch2: Buffer<Scalar>
}

/// A 3D DSN with its weights: the forward pass of the whole network.
public struct DSNNetwork<Scalar: NetworkScalar>: Sendable {
    /// The hyperparameters.
    public let architecture: DSNArchitecture
    /// conv1, conv2, conv4, conv5, conv7, conv8 (each followed by ReLU).
    public let convolutions: [Convolution3D<Scalar>]
    /// deconv9 (ReLU) and deconv10 (class scores).
    public let mainUpsampling: [TransposedConvolution3D<Scalar>]
    /// Branch 1's single up-sampling to class scores.
    public let branch1Upsampling: TransposedConvolution3D<Scalar>
    /// Branch 2's two up-samplings (ReLU between) to class scores.
    public let branch2Upsampling: [TransposedConvolution3D<Scalar>]

    /// Builds the layers from named parameters whose shapes match `architecture.parameterShapes`.
    // Exported Float specialisations: callers in other modules (pipeline, trainer) would
    // otherwise run the generic code unspecialised, several times slower.
    @_specialize(exported:true,where Scalar == Float)
    public init(architecture: DSNArchitecture, parameters: [String: [Scalar]]) throws {
        self.architecture = architecture
        let a = architecture
        func values(_ name: String, _ count: Int) throws -> [Scalar] {
            guard let v = parameters[name], v.count == count else {
                throw LiversegError.invalidModel("tensor \(name) is missing or has the wrong size")
            }
            return v
        }
        var cin = a.inChannels
        var convs: [Convolution3D<Scalar>] = []
        for (i, name) in DSNArchitecture.convNames.enumerated() {
            let cout = a.convChannels[i], k = a.convKernels[i]
            convs.append(
                Convolution3D(
                    inChannels: cin, outChannels: cout, kernel: k,
                    weight: try values("\(name).weight", cout * cin * k.voxelCount),
                    bias: try values("\(name).bias", cout), relu: true))
            cin = a.convChannels[i]
        }
        convolutions = convs
        func deconv(_ name: String, _ cin: Int, _ cout: Int, relu: Bool) throws -> TransposedConvolution3D<Scalar> {
            TransposedConvolution3D(
                inChannels: cin, outChannels: cout, weight: try values("\(name).weight", cin * cout * 27),
                bias: try values("\(name).bias", cout), relu: relu)
        }
        mainUpsampling = [
            try deconv("deconv9", a.convChannels[5], a.mainDeconvChannels, relu: true),
            try deconv("deconv10", a.mainDeconvChannels, a.classes, relu: false),
        ]
        branch1Upsampling = try deconv("branch1.deconv", a.convChannels[1], a.classes, relu: false)
        branch2Upsampling = [
            try deconv("branch2.deconv1", a.convChannels[3], a.branch2DeconvChannels, relu: true),
            try deconv("branch2.deconv2", a.branch2DeconvChannels, a.classes, relu: false),
        ]
    }

    /// Every parameter with its model-file name and shape, in `parameterShapes` order.
    public var parameters: [(name: String, shape: [Int], values: [Scalar])] {
        var values: [String: [Scalar]] = [:]
        for (name, conv) in zip(DSNArchitecture.convNames, convolutions) {
            values["\(name).weight"] = conv.weight
            values["\(name).bias"] = conv.bias
        }
        for (name, layer) in [
            ("deconv9", mainUpsampling[0]), ("deconv10", mainUpsampling[1]),
            ("branch1.deconv", branch1Upsampling),
            ("branch2.deconv1", branch2Upsampling[0]), ("branch2.deconv2", branch2Upsampling[1]),
        ] {
            values["\(name).weight"] = layer.weight
            values["\(name).bias"] = layer.bias
        }
        return architecture.parameterShapes.map { ($0.name, $0.shape, values[$0.name] ?? []) }
    }

    /// Index of the liver class in every output.
    public static var liverClass: Int { 1 }

    /// Forward pass of a one-channel input [1, Z, Y, X] whose extents are multiples of 4.
    /// Returns the liver probability of the main output and both branches. `progress`
    /// receives the fraction of multiply-accumulates done, within layers too (see
    /// `parallelRounds`); it may throw (e.g. `LiversegError.cancelled`) to stop.
    @_specialize(exported:true,where Scalar == Float)
    public func forward(
        _ input: Tensor<Scalar>, threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws -> DSNOutputs<Scalar> {
        precondition(input.channels == 1)
        precondition(input.size.x % 4 == 0 && input.size.y % 4 == 0 && input.size.z % 4 == 0)
        let voxels = input.size.voxelCount
        let main = try Buffer<Scalar>(count: voxels, zeroed: false)
        let branch1 = try Buffer<Scalar>(count: voxels, zeroed: false)
        let branch2 = try Buffer<Scalar>(count: voxels, zeroed: false)
        let total = Double(architecture.macs(over: input.size))
        var done = 0.0
        func finished(_ name: String, macs: Int, since start: Double) throws {
            let seconds = monotonicSeconds() - start
            Log.write(.debug, "\(name) over \(input.size): \(seconds) s, \(2 * Double(macs) / seconds / 1e9) GFLOP/s")
            done += Double(macs)
            try progress(done / total)
        }
        func conv(_ i: Int, _ x: Tensor<Scalar>) throws -> Tensor<Scalar> {
            let start = monotonicSeconds(), macs = convolutions[i].macs(over: x.size)
            let y = try convolutions[i].forward(x, threads: threads) { try progress((done + $0 * Double(macs)) / total) }
            try finished(DSNArchitecture.convNames[i], macs: macs, since: start)
            return y
        }
        func up(_ layer: TransposedConvolution3D<Scalar>, _ name: String, _ x: Tensor<Scalar>) throws -> Tensor<Scalar> {
            let start = monotonicSeconds(), macs = layer.macs(over: x.size)
            let y = try layer.forward(x, threads: threads) { try progress((done + $0 * Double(macs)) / total) }
            try finished(name, macs: macs, since: start)
            return y
        }
        func probability(_ scores: Tensor<Scalar>, _ out: Buffer<Scalar>) {
            Softmax.classProbability(scores, targetClass: Self.liverClass, into: out.pointer, threads: threads)
        }
        // Each stage's tensors are released as soon as the next is made, bounding memory.
        let pool1 = try MaxPool2.forward(try conv(1, try conv(0, input)), threads: threads)
        probability(try up(branch1Upsampling, "branch1.deconv", pool1), branch1)
        let pool2 = try MaxPool2.forward(try conv(3, try conv(2, pool1)), threads: threads)
        probability(
            try up(branch2Upsampling[1], "branch2.deconv2", try up(branch2Upsampling[0], "branch2.deconv1", pool2)), branch2)
        let top = try conv(5, try conv(4, pool2))
        probability(try up(mainUpsampling[1], "deconv10", try up(mainUpsampling[0], "deconv9", top)), main)
        return DSNOutputs(main: main, branch1: branch1, branch2: branch2)
    }
}
