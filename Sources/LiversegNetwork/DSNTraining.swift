import LiversegSupport

/// The three cross-entropy terms of the paper's eq. 3 for one input.
public struct DSNLoss<Scalar: NetworkScalar>: Sendable {
    /// Main output.
    public let main: Scalar
    /// Deep-supervision branch 1.
    public let branch1: Scalar
    /// Deep-supervision branch 2.
    public let branch2: Scalar
    /// main + η1·branch1 + η2·branch2 (the data term of eq. 3; weight decay is the optimiser's).
    public let total: Scalar
}

extension DSNNetwork {
    /// The data term of eq. 3 and its gradient with respect to every parameter, by
    /// backpropagation through `run` (the graph inference uses) with its activations kept.
    /// Each layer's backward below mirrors a step of `run`, in reverse.
    ///
    /// input [1, Z, Y, X] (extents multiples of 4); labels: Z·Y·X class indices;
    /// eta: (η1, η2), the branch weights (0, 0 trains the plain 3D-CNN).
    /// Returns the loss terms and dL/dθ as a flat buffer laid out as `architecture.parameterTable`.
    @_specialize(exported:true,where Scalar == Float)
    public func lossAndGradients(
        _ input: Tensor<Scalar>, labels: UnsafePointer<UInt8>, eta: (Scalar, Scalar),
        threads: Int
    ) throws -> (DSNLoss<Scalar>, [Scalar]) {
        try workspace.using { try lossAndGradientsPass(input, labels: labels, eta: eta, threads: threads) }
    }

    private func lossAndGradientsPass(
        _ input: Tensor<Scalar>, labels: UnsafePointer<UInt8>, eta: (Scalar, Scalar), threads: Int
    ) throws -> (DSNLoss<Scalar>, [Scalar]) {
        let t = threads
        var kept: DSNActivations<Scalar>? = DSNActivations()
        var outputScores: [DSNOutput: Tensor<Scalar>] = [:]
        try run(input, threads: t, keeping: &kept) { outputScores[$0] = $1 }
        guard let a = kept, let c1 = a.conv1, let c2 = a.conv2, let p1 = a.pool1, let c4 = a.conv4,
            let c5 = a.conv5, let p2 = a.pool2, let b2 = a.branch2Hidden, let c7 = a.conv7, let c8 = a.conv8,
            let d9 = a.deconv9, let s0 = outputScores[.main], let s1 = outputScores[.branch1],
            let s2 = outputScores[.branch2]
        else { throw LiversegError.internalError("the forward pass did not keep every activation backward reads") }

        let (lossMain, dS0) = try Softmax.crossEntropy(s0, labels: labels, threads: t)
        let (loss1, dS1) = try Softmax.crossEntropy(s1, labels: labels, threads: t)
        let (loss2, dS2) = try Softmax.crossEntropy(s2, labels: labels, threads: t)
        scale(dS1, by: eta.0, threads: t)
        scale(dS2, by: eta.1, threads: t)

        // Layer l (convolutions 0…5, then deconv9, deconv10, branch1, branch2a, branch2b) owns
        // table entries 2l (weight) and 2l + 1 (bias).
        let table = architecture.parameterTable
        var gradients = [Scalar](repeating: 0, count: architecture.parameterCount)
        func record(_ l: Int, _ g: LayerGradients<Scalar>) {
            gradients.replaceSubrange(table[2 * l].range, with: g.weight)
            gradients.replaceSubrange(table[2 * l + 1].range, with: g.bias)
        }
        let (deconv9, deconv10, branch1, branch2a, branch2b) = (6, 7, 8, 9, 10)
        // Main path back to the second pool.
        let g10 = try mainUpsampling[1].backward(input: d9, output: s0, outputGradient: dS0, threads: t)
        record(deconv10, g10)
        let g9 = try mainUpsampling[0].backward(input: c8, output: d9, outputGradient: g10.input, threads: t)
        record(deconv9, g9)
        let g8 = try convolutions[5].backward(input: c7, output: c8, outputGradient: g9.input, threads: t)
        record(5, g8)
        let g7 = try convolutions[4].backward(input: p2, output: c7, outputGradient: g8.input, threads: t)
        record(4, g7)
        // Branch 2 joins at the second pool.
        let gb2b = try branch2Upsampling[1].backward(input: b2, output: s2, outputGradient: dS2, threads: t)
        record(branch2b, gb2b)
        let gb2a = try branch2Upsampling[0].backward(input: p2, output: b2, outputGradient: gb2b.input, threads: t)
        record(branch2a, gb2a)
        add(gb2a.input, into: g7.input, threads: t)
        let gc5 = try convolutions[3].backward(
            input: c4, output: c5,
            outputGradient: try MaxPool2.backward(input: c5, outputGradient: g7.input, threads: t),
            threads: t)
        record(3, gc5)
        let gc4 = try convolutions[2].backward(input: p1, output: c4, outputGradient: gc5.input, threads: t)
        record(2, gc4)
        // Branch 1 joins at the first pool.
        let gb1 = try branch1Upsampling.backward(input: p1, output: s1, outputGradient: dS1, threads: t)
        record(branch1, gb1)
        add(gb1.input, into: gc4.input, threads: t)
        let gc2 = try convolutions[1].backward(
            input: c1, output: c2,
            outputGradient: try MaxPool2.backward(input: c2, outputGradient: gc4.input, threads: t),
            threads: t)
        record(1, gc2)
        let gc1 = try convolutions[0].backward(input: input, output: c1, outputGradient: gc2.input, threads: t)
        record(0, gc1)

        let loss = DSNLoss(
            main: lossMain, branch1: loss1, branch2: loss2,
            total: lossMain + eta.0 * loss1 + eta.1 * loss2)
        return (loss, gradients)
    }
}

/// x ← a·x in place.
private func scale<Scalar: NetworkScalar>(_ x: Tensor<Scalar>, by a: Scalar, threads: Int) {
    let p = x.storage.pointer
    parallelChunks(x.storage.count, threads: threads) { _, range in
        for i in range { p[i] *= a }
    }
}

/// y ← y + x in place (same shapes).
private func add<Scalar: NetworkScalar>(_ x: Tensor<Scalar>, into y: Tensor<Scalar>, threads: Int) {
    let (src, dst) = (x.storage.pointer, y.storage.pointer)
    parallelChunks(y.storage.count, threads: threads) { _, range in
        for i in range { dst[i] += src[i] }
    }
}
