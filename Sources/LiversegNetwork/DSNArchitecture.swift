import LiversegSupport

/// Hyperparameters of a 3D DSN (Dou et al. 2016, Fig. 1): the topology is fixed, the
/// channel counts and kernel sizes come from the model file.
///
/// Mainstream: conv1, conv2 → pool → conv4, conv5 → pool → conv7, conv8 → deconv9 → deconv10
/// → softmax. Deep supervision: branch 1 up-samples the first pool's output once, branch 2
/// the second pool's output twice. Layer names follow the paper's layer numbers.
public struct DSNArchitecture: Equatable, Sendable {
    /// Channels of the input volume (1: CT intensity).
    public var inChannels: Int
    /// Output channels of conv1, conv2, conv4, conv5, conv7, conv8.
    public var convChannels: [Int]
    /// Kernel sizes (x, y, z) of those six layers; each extent odd.
    public var convKernels: [GridSize]
    /// Output channels of deconv9 (input of deconv10).
    public var mainDeconvChannels: Int
    /// Output channels of branch 2's first up-sampling layer.
    public var branch2DeconvChannels: Int
    /// Classes scored by every output (2: background, liver).
    public var classes: Int

    /// Names of the six convolution layers, in order.
    public static let convNames = ["conv1", "conv2", "conv4", "conv5", "conv7", "conv8"]

    /// The paper's network: 8@9×9×7, 8@9×9×7, 16@7×7×5, 32@7×7×5, 32@5×5×3, 32@1×1×1.
    /// The up-sampling channel counts are not published; 16 is our choice.
    public static let paper = DSNArchitecture(
        inChannels: 1, convChannels: [8, 8, 16, 32, 32, 32],
        convKernels: [
            GridSize(x: 9, y: 9, z: 7), GridSize(x: 9, y: 9, z: 7), GridSize(x: 7, y: 7, z: 5),
            GridSize(x: 7, y: 7, z: 5), GridSize(x: 5, y: 5, z: 3), GridSize(x: 1, y: 1, z: 1),
        ],
        mainDeconvChannels: 16, branch2DeconvChannels: 16, classes: 2)

    /// Creates an architecture from its hyperparameters (checked by `validate`).
    public init(
        inChannels: Int, convChannels: [Int], convKernels: [GridSize],
        mainDeconvChannels: Int, branch2DeconvChannels: Int, classes: Int
    ) {
        self.inChannels = inChannels
        self.convChannels = convChannels
        self.convKernels = convKernels
        self.mainDeconvChannels = mainDeconvChannels
        self.branch2DeconvChannels = branch2DeconvChannels
        self.classes = classes
    }

    /// Throws `invalidModel` naming the first inconsistent hyperparameter.
    public func validate() throws {
        func fail(_ m: String) -> LiversegError { .invalidModel("architecture: \(m)") }
        guard inChannels == 1 else { throw fail("in_channels must be 1, got \(inChannels)") }
        guard convChannels.count == 6 else { throw fail("conv_channels needs 6 entries, got \(convChannels.count)") }
        guard convKernels.count == 6 else { throw fail("conv_kernels needs 6 entries, got \(convKernels.count)") }
        for (name, c) in zip(Self.convNames, convChannels) where !(1...1024).contains(c) {
            throw fail("\(name) channels \(c) outside 1...1024")
        }
        for (name, k) in zip(Self.convNames, convKernels) {
            for e in [k.x, k.y, k.z] where e < 1 || e > 31 || e % 2 == 0 {
                throw fail("\(name) kernel \(k) must have odd extents in 1...31")
            }
        }
        guard (1...1024).contains(mainDeconvChannels) else {
            throw fail("main_deconv_channels \(mainDeconvChannels) outside 1...1024")
        }
        guard (1...1024).contains(branch2DeconvChannels) else {
            throw fail("branch2_deconv_channels \(branch2DeconvChannels) outside 1...1024")
        }
        guard (2...16).contains(classes) else { throw fail("classes \(classes) outside 2...16") }
    }

    /// Every tensor the model file must hold, with its shape, in a fixed order.
    /// Convolutions: [Cout, Cin, kz, ky, kx]; transposed convolutions: [Cin, Cout, 3, 3, 3].
    public var parameterShapes: [(name: String, shape: [Int])] {
        var result: [(String, [Int])] = []
        var cin = inChannels
        for (i, name) in Self.convNames.enumerated() {
            let k = convKernels[i], cout = convChannels[i]
            result.append(("\(name).weight", [cout, cin, k.z, k.y, k.x]))
            result.append(("\(name).bias", [cout]))
            cin = cout
        }
        func deconv(_ name: String, _ cin: Int, _ cout: Int) {
            result.append(("\(name).weight", [cin, cout, 3, 3, 3]))
            result.append(("\(name).bias", [cout]))
        }
        deconv("deconv9", convChannels[5], mainDeconvChannels)
        deconv("deconv10", mainDeconvChannels, classes)
        deconv("branch1.deconv", convChannels[1], classes)
        deconv("branch2.deconv1", convChannels[3], branch2DeconvChannels)
        deconv("branch2.deconv2", branch2DeconvChannels, classes)
        return result
    }

    /// Where each tensor of `parameterShapes` lives in one flat buffer of `parameterCount`
    /// values (model-file order, each tensor row-major): the layout of the network's
    /// parameters, its gradients, the trainer's momentum and `liverseg_network_loss_gradient`.
    public var parameterTable: [ParameterTensor] {
        var offset = 0
        return parameterShapes.map { name, shape in
            defer { offset += shape.reduce(1, *) }
            return ParameterTensor(name: name, shape: shape, offset: offset)
        }
    }

    /// Total number of weights and biases.
    public var parameterCount: Int { parameterShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// Extents of a network input must be multiples of this (two 2× poolings).
    public static let sizeMultiple = 4

    /// How far (in input voxels, per axis) an output voxel's value can depend on input
    /// voxels, rounded up to a multiple of 4: tiles that overlap by this much reproduce
    /// the untiled output. Traced through the main path, which reaches furthest (each branch
    /// skips layers of it): an up-sampled output o reads inputs ⌈(o−1)/2⌉…⌊(o+1)/2⌋, a
    /// pooled index j covers 2j and 2j+1, a convolution reaches its kernel radius; the
    /// worst case over the four positions of o modulo 4.
    public var receptiveHalo: GridSize {
        func axis(_ k: [Int]) -> Int {
            let r = k.map { ($0 - 1) / 2 }
            func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
            var reach = 0
            for o in 0..<4 {
                let up1 = floorDiv(o + 1, 2), up2 = floorDiv(up1 + 1, 2)  // deconv10, deconv9
                let down1 = -floorDiv(-(o - 1), 2), down2 = -floorDiv(-(down1 - 1), 2)
                let level1High = 2 * (up2 + r[4] + r[5]) + 1 + r[2] + r[3]  // conv7/8, pool2, conv4/5
                let level1Low = 2 * (down2 - r[4] - r[5]) - r[2] - r[3]
                let high = 2 * level1High + 1 + r[0] + r[1]  // pool1, conv1/2
                let low = 2 * level1Low - r[0] - r[1]
                reach = max(reach, high - o, o - low)
            }
            return (reach + 3) / 4 * 4
        }
        return GridSize(x: axis(convKernels.map(\.x)), y: axis(convKernels.map(\.y)), z: axis(convKernels.map(\.z)))
    }

    /// Multiply-accumulates of one forward pass over an input of `size` (all three outputs).
    public func macs(over size: GridSize) -> Int {
        let l1 = size.divided(by: 2), l2 = size.divided(by: 4)
        let k = convKernels.map(\.voxelCount), c = convChannels
        var total = c[0] * inChannels * k[0] * size.voxelCount + c[1] * c[0] * k[1] * size.voxelCount
        total += c[2] * c[1] * k[2] * l1.voxelCount + c[3] * c[2] * k[3] * l1.voxelCount
        total += c[4] * c[3] * k[4] * l2.voxelCount + c[5] * c[4] * k[5] * l2.voxelCount
        total += 27 * (c[5] * mainDeconvChannels * l2.voxelCount + mainDeconvChannels * classes * l1.voxelCount)
        total += 27 * c[1] * classes * l1.voxelCount
        total += 27 * (c[3] * branch2DeconvChannels * l2.voxelCount + branch2DeconvChannels * classes * l1.voxelCount)
        return total
    }
}

/// One tensor of a network's flat parameter buffer.
public struct ParameterTensor: Equatable, Sendable {
    /// Its model-file name, e.g. "conv1.weight".
    public let name: String
    /// Its shape (see `DSNArchitecture.parameterShapes`).
    public let shape: [Int]
    /// Its first value's index in the flat buffer.
    public let offset: Int
    /// Its number of values.
    public var count: Int { shape.reduce(1, *) }
    /// Its index range in the flat buffer.
    public var range: Range<Int> { offset..<(offset + count) }
    /// Whether weight decay applies (weights, not biases).
    public var isWeight: Bool { name.hasSuffix(".weight") }
}
