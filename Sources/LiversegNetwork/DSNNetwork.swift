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
    /// Working memory kept between passes (`BufferPool`) of `forward` and
    /// `lossAndGradients`: repeated passes on the same shapes (training steps, a caller's
    /// forward calls) reuse it instead of faulting in fresh pages. `fusedProbability` —
    /// `segment`'s one or few passes per CT — does not use it: kept blocks of one size
    /// beside fresh ones of others raised `segment`'s peak memory (600 slices without the
    /// CRF 0.82 → 1.12 GB) for no gain. `workspace.trim()` releases it.
    public let workspace: BufferPool

    /// Builds the layers from `parameters`, the flat buffer `architecture.parameterTable`
    /// describes: each layer's weight then bias, convolutions conv1…conv8, then deconv9,
    /// deconv10, branch1.deconv, branch2.deconv1, branch2.deconv2.
    // Exported Float specialisations: callers in other modules (pipeline, trainer) would
    // otherwise run the generic code unspecialised, several times slower.
    /// `workspace` may be shared with earlier networks of the same shapes (a trainer's
    /// network of each step).
    @_specialize(exported:true,where Scalar == Float)
    public init(architecture: DSNArchitecture, parameters: [Scalar], workspace: BufferPool = BufferPool()) throws {
        guard parameters.count == architecture.parameterCount else {
            throw LiversegError.invalidModel(
                "\(parameters.count) parameters given; the architecture has \(architecture.parameterCount)")
        }
        self.architecture = architecture
        self.workspace = workspace
        let a = architecture
        let table = a.parameterTable
        // Layer l's weight is table entry 2l, its bias 2l + 1.
        func weight(_ l: Int) -> [Scalar] { Array(parameters[table[2 * l].range]) }
        func bias(_ l: Int) -> [Scalar] { Array(parameters[table[2 * l + 1].range]) }
        var cin = a.inChannels
        var convs: [Convolution3D<Scalar>] = []
        for (l, (cout, k)) in zip(a.convChannels, a.convKernels).enumerated() {
            convs.append(
                Convolution3D(inChannels: cin, outChannels: cout, kernel: k, weight: weight(l), bias: bias(l), relu: true))
            cin = cout
        }
        convolutions = convs
        let deconvs = [
            (a.convChannels[5], a.mainDeconvChannels, true), (a.mainDeconvChannels, a.classes, false),
            (a.convChannels[1], a.classes, false),
            (a.convChannels[3], a.branch2DeconvChannels, true), (a.branch2DeconvChannels, a.classes, false),
        ].enumerated().map { j, layer in
            let l = convs.count + j
            return TransposedConvolution3D(
                inChannels: layer.0, outChannels: layer.1, weight: weight(l), bias: bias(l), relu: layer.2)
        }
        mainUpsampling = [deconvs[0], deconvs[1]]
        branch1Upsampling = deconvs[2]
        branch2Upsampling = [deconvs[3], deconvs[4]]
    }

    /// The layers in `parameterTable` order (convolutions, then deconv9, deconv10, branch 1,
    /// branch 2): layer l's weight and bias are table entries 2l and 2l + 1.
    private var layerParameters: [(weight: [Scalar], bias: [Scalar])] {
        convolutions.map { ($0.weight, $0.bias) }
            + (mainUpsampling + [branch1Upsampling] + branch2Upsampling).map { ($0.weight, $0.bias) }
    }

    /// The flat parameter buffer `architecture.parameterTable` describes.
    public var flatParameters: [Scalar] { layerParameters.flatMap { $0.weight + $0.bias } }

    /// Every parameter with its model-file name and shape, in `parameterTable` order.
    public var parameters: [(name: String, shape: [Int], values: [Scalar])] {
        let values = layerParameters.flatMap { [$0.weight, $0.bias] }
        return zip(architecture.parameterTable, values).map { ($0.name, $0.shape, $1) }
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
        try workspace.using { try forwardPass(input, threads: threads, progress: progress) }
    }

    private func forwardPass(
        _ input: Tensor<Scalar>, threads: Int, progress: (Double) throws -> Void
    ) throws -> DSNOutputs<Scalar> {
        let voxels = input.size.voxelCount
        let main = try Buffer<Scalar>(count: voxels, zeroed: false)
        let branch1 = try Buffer<Scalar>(count: voxels, zeroed: false)
        let branch2 = try Buffer<Scalar>(count: voxels, zeroed: false)
        var unkept: DSNActivations<Scalar>? = nil
        try run(input, threads: threads, keeping: &unkept, progress: progress) { output, scores in
            let target = output.select(main: main, branch1: branch1, branch2: branch2)
            Softmax.classProbability(scores, targetClass: Self.liverClass, into: target.pointer, threads: threads)
        }
        return DSNOutputs(main: main, branch1: branch1, branch2: branch2)
    }

    /// Forward pass returning only the eq. 4 fusion Σ weight[o]·P_o(liver) of the three
    /// outputs, accumulated as each output appears so that no per-output map is kept.
    /// `weights` holds (main, branch 1, branch 2); input and `progress` as in `forward`.
    @_specialize(exported:true,where Scalar == Float)
    public func fusedProbability(
        _ input: Tensor<Scalar>, weights: (main: Scalar, branch1: Scalar, branch2: Scalar), threads: Int,
        progress: (Double) throws -> Void = { _ in }
    ) throws -> Buffer<Scalar> {
        let fused = try Buffer<Scalar>(count: input.size.voxelCount, zeroed: true)
        var unkept: DSNActivations<Scalar>? = nil
        try run(input, threads: threads, keeping: &unkept, progress: progress) { output, scores in
            Softmax.classProbability(
                scores, targetClass: Self.liverClass, into: fused.pointer,
                weight: output.select(main: weights.main, branch1: weights.branch1, branch2: weights.branch2),
                accumulating: true, threads: threads)
        }
        return fused
    }

    /// The graph, wired once for inference and training. Shapes for input [1, Z, Y, X]
    /// (extents multiples of 4), C1…C6 = `convChannels`, K = classes:
    ///
    ///     conv1 [C1, Z, Y, X] → conv2 [C2, Z, Y, X] → pool1 [C2, Z/2, Y/2, X/2]
    ///       pool1 → branch1.deconv (×2) → branch-1 scores [K, Z, Y, X]
    ///     pool1 → conv4 [C3, ·/2] → conv5 [C4, ·/2] → pool2 [C4, ·/4]
    ///       pool2 → branch2.deconv1 (×2, ReLU) [B2, ·/2] → branch2.deconv2 (×2) → branch-2 scores
    ///     pool2 → conv7 [C5, ·/4] → conv8 [C6, ·/4] → deconv9 (×2, ReLU) [D9, ·/2]
    ///       → deconv10 (×2) → main scores [K, Z, Y, X]
    ///
    /// Each output's class scores go to `scores` as soon as they exist (branch 1, branch 2,
    /// main). With `kept` non-nil every activation the backward pass reads is stored there;
    /// with nil each stage's tensors are released once the next is made, bounding memory.
    func run(
        _ input: Tensor<Scalar>, threads: Int, keeping kept: inout DSNActivations<Scalar>?,
        progress: (Double) throws -> Void = { _ in },
        scores: (DSNOutput, Tensor<Scalar>) throws -> Void
    ) throws {
        guard input.channels == 1,
            input.size.x % DSNArchitecture.sizeMultiple == 0, input.size.y % DSNArchitecture.sizeMultiple == 0,
            input.size.z % DSNArchitecture.sizeMultiple == 0
        else {
            throw LiversegError.internalError(
                "network input [\(input.channels), \(input.size)] must have one channel and extents that are multiples of \(DSNArchitecture.sizeMultiple)"
            )
        }
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
        func keep(_ x: Tensor<Scalar>, as key: WritableKeyPath<DSNActivations<Scalar>, Tensor<Scalar>?>) -> Tensor<Scalar> {
            kept?[keyPath: key] = x
            return x
        }
        let pool1 = keep(
            try MaxPool2.forward(keep(try conv(1, keep(try conv(0, input), as: \.conv1)), as: \.conv2), threads: threads),
            as: \.pool1)
        try scores(.branch1, try up(branch1Upsampling, "branch1.deconv", pool1))
        let pool2 = keep(
            try MaxPool2.forward(keep(try conv(3, keep(try conv(2, pool1), as: \.conv4)), as: \.conv5), threads: threads),
            as: \.pool2)
        try scores(
            .branch2,
            try up(
                branch2Upsampling[1], "branch2.deconv2",
                keep(try up(branch2Upsampling[0], "branch2.deconv1", pool2), as: \.branch2Hidden)))
        let top = keep(try conv(5, keep(try conv(4, pool2), as: \.conv7)), as: \.conv8)
        try scores(.main, try up(mainUpsampling[1], "deconv10", keep(try up(mainUpsampling[0], "deconv9", top), as: \.deconv9)))
    }
}

/// One of the network's three class-score outputs.
public enum DSNOutput: Hashable, Sendable {
    case main, branch1, branch2

    /// The one of three per-output values that belongs to this output.
    func select<T>(main: T, branch1: T, branch2: T) -> T {
        switch self {
        case .main: return main
        case .branch1: return branch1
        case .branch2: return branch2
        }
    }
}

/// The activations of one forward pass that backpropagation reads (see `DSNNetwork.run`
/// for the shapes); nil where the pass did not keep them.
struct DSNActivations<Scalar: NetworkScalar> {
    var conv1, conv2, pool1, conv4, conv5, pool2, branch2Hidden, conv7, conv8, deconv9: Tensor<Scalar>?
}
