import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegNetwork
import LiversegPipeline

/// How weights start (paper: Gaussian σ = 0.01; He scaling trains faster from scratch).
public enum WeightInitialization: Equatable, Sendable {
    /// N(0, σ²) for every weight, zero biases.
    case gaussian(sigma: Double)
    /// N(0, 2 / fan-in) for every weight, zero biases.
    case he
}

/// Everything that determines a training run.
public struct TrainingConfiguration: Sendable {
    /// The network's hyperparameters.
    public var architecture = DSNArchitecture.paper
    /// Model grid and intensity conventions (stored in the model file).
    public var preprocessing: Preprocessing
    /// Eq. 4 weights written to the model file (with deep supervision; the plain 3D-CNN's
    /// model uses its main output alone).
    public var fusionTau: [Double] = [0.1, 0.1]
    /// Training patch extents (multiples of 4).
    public var patch = GridSize(x: 64, y: 64, z: 48)
    /// Patches per epoch.
    public var iterationsPerEpoch = 50
    /// Initial learning rate, divided by `learningRateDrop` every `learningRateStepEpochs`.
    public var learningRate = 0.01
    public var learningRateDrop = 10.0
    public var learningRateStepEpochs = 50
    /// SGD momentum.
    public var momentum = 0.9
    /// L2 penalty on weights, as PyTorch's weight_decay: the gradient gains weightDecay·w
    /// (eq. 3's λ is weightDecay / 2). Biases are not decayed.
    public var weightDecay = 5e-4
    /// Initial η of branch 1 and 2, multiplied by `etaDecay` every `etaStepEpochs`.
    public var eta = (0.3, 0.4)
    public var etaDecay = 0.95
    public var etaStepEpochs = 10
    /// false: the plain 3D-CNN (η = 0).
    public var deepSupervision = true
    /// Weight initialisation.
    public var initialization = WeightInitialization.he
    /// Seed of initialisation and patch sampling.
    public var seed: UInt64 = 0
    /// Worker threads; 0 = all cores.
    public var threads = 0
    /// Geometric augmentation of the training patches.
    public var spatialAugmentation = SpatialAugmentation.anatomical
    /// Grey-value augmentation of the training patches, or nil for none.
    public var intensityAugmentation: IntensityAugmentation?

    /// A configuration for a model grid.
    public init(preprocessing: Preprocessing) { self.preprocessing = preprocessing }

    /// The patch sampler this configuration trains with on `volumes`.
    public func sampler(_ volumes: [TrainingVolume]) throws -> PatchSampler {
        try PatchSampler(
            volumes: volumes, patch: patch, padValue: preprocessing.normalise(-.infinity), seed: seed,
            spatialAugmentation: spatialAugmentation, intensityAugmentation: intensityAugmentation, preprocessing: preprocessing)
    }

    /// η for an epoch (0-based).
    public func eta(epoch: Int) -> (Double, Double) {
        guard deepSupervision else { return (0, 0) }
        let f = pow(etaDecay, Double(epoch / max(1, etaStepEpochs)))
        return (eta.0 * f, eta.1 * f)
    }

    /// Learning rate for an epoch (0-based).
    public func learningRate(epoch: Int) -> Double {
        learningRate / pow(learningRateDrop, Double(epoch / max(1, learningRateStepEpochs)))
    }
}

/// Mean losses of one epoch.
public struct EpochSummary: Sendable {
    /// 1-based epoch number.
    public let epoch: Int
    /// Mean eq. 3 data term and its parts over the epoch's patches.
    public let total: Double, main: Double, branch1: Double, branch2: Double
    /// Wall seconds the epoch took.
    public let seconds: Double
}

/// SGD with momentum over the network's parameters, epoch by epoch, with checkpoints that
/// resume bit-identically (patch i of a seed never depends on what ran before).
public final class Trainer {
    /// The run's settings.
    public let configuration: TrainingConfiguration
    /// Current parameters: the flat buffer `architecture.parameterTable` lays out.
    public private(set) var parameters: [Float]
    /// Momentum, laid out as the parameters.
    public private(set) var velocity: [Float]
    /// Epochs completed.
    public private(set) var epochsDone = 0
    /// The working memory every step's network reuses (the steps' shapes repeat).
    private let workspace = BufferPool()

    /// A fresh run with initialised weights.
    public init(configuration: TrainingConfiguration) throws {
        try configuration.architecture.validate()
        self.configuration = configuration
        var rng = SeededGenerator(seed: configuration.seed, stream: 0, index: 0)
        var parameters: [Float] = []
        for tensor in configuration.architecture.parameterTable {
            guard tensor.isWeight else {
                parameters += [Float](repeating: 0, count: tensor.count)
                continue
            }
            // Convolutions [Cout, Cin, k…]: fan-in Cin·taps; transposed [Cin, Cout, 27]: each
            // output sums about Cin·27/8 inputs, taken as Cin·27 like PyTorch's default.
            let fanIn = tensor.name.hasPrefix("conv") ? tensor.shape.dropFirst().reduce(1, *) : tensor.shape[0] * 27
            let sigma: Double
            switch configuration.initialization {
            case .gaussian(let s): sigma = s
            case .he: sigma = (2.0 / Double(fanIn)).squareRoot()
            }
            parameters += (0..<tensor.count).map { _ in Float(rng.gaussian() * sigma) }
        }
        self.parameters = parameters
        self.velocity = [Float](repeating: 0, count: parameters.count)
    }

    /// The current network.
    public func network() throws -> DSNNetwork<Float> {
        try DSNNetwork(architecture: configuration.architecture, parameters: parameters, workspace: workspace)
    }

    /// The current weights as a model (ready to segment or to write with `fileBytes()`).
    /// Without deep supervision the fusion is the main output alone.
    public func model(extraMetadata: [(String, JSONValue)] = []) throws -> Model {
        // The plain 3D-CNN's branch layers never receive a gradient (η = 0): they keep their
        // initial random weights, and any τ > 0 would mix that noise into its output.
        try Model(
            network: try network(), preprocessing: configuration.preprocessing,
            fusionTau: configuration.deepSupervision ? configuration.fusionTau : [0, 0],
            extraMetadata: extraMetadata)
    }

    /// Trains one epoch on `sampler`'s patches; `progress(done, total, loss)` after each
    /// patch may throw to stop. Patches are prepared one ahead on another thread.
    public func trainEpoch(
        _ sampler: PatchSampler,
        progress: (Int, Int, Double) throws -> Void = { _, _, _ in }
    ) throws -> EpochSummary {
        let c = configuration, threads = resolvedThreadCount(c.threads)
        let epoch = epochsDone
        let (eta1, eta2) = c.eta(epoch: epoch)
        let rate = Float(c.learningRate(epoch: epoch)), mu = Float(c.momentum), decay = Float(c.weightDecay)
        let start = monotonicSeconds()
        let table = c.architecture.parameterTable
        var sums = (0.0, 0.0, 0.0, 0.0)
        let first = epoch * c.iterationsPerEpoch
        var next = Prefetch { try sampler.patch(first) }
        for i in 0..<c.iterationsPerEpoch {
            let (input, labels) = try next.value()
            if i + 1 < c.iterationsPerEpoch { next = Prefetch { try sampler.patch(first + i + 1) } }
            // A network value per step: the layers are immutable (a loaded model serves many
            // threads) and their FFT kernel spectra derive from this step's weights, so only
            // the working memory carries over; building it copies the 1.2 MB of parameters.
            let (loss, gradients) = try labels.withUnsafeBufferPointer { l in
                try network().lossAndGradients(input, labels: l.baseAddress!, eta: (Float(eta1), Float(eta2)), threads: threads)
            }
            // SGD with momentum; weight decay on weights, not biases.
            for tensor in table {
                let decayed = tensor.isWeight ? decay : 0
                for j in tensor.range {
                    velocity[j] = mu * velocity[j] - rate * (gradients[j] + decayed * parameters[j])
                    parameters[j] += velocity[j]
                }
            }
            guard loss.total.isFinite else {
                throw LiversegError.invalidArgument(
                    "training diverged at epoch \(epoch + 1), patch \(i + 1) (loss \(loss.total)); lower the learning rate")
            }
            sums.0 += Double(loss.total); sums.1 += Double(loss.main); sums.2 += Double(loss.branch1);
            sums.3 += Double(loss.branch2)
            try progress(i + 1, c.iterationsPerEpoch, Double(loss.total))
        }
        epochsDone += 1
        let n = Double(c.iterationsPerEpoch)
        return EpochSummary(
            epoch: epochsDone, total: sums.0 / n, main: sums.1 / n, branch1: sums.2 / n,
            branch2: sums.3 / n, seconds: monotonicSeconds() - start)
    }

    // MARK: Checkpoints

    /// The run's state as a safetensors file: parameters, "velocity.<name>" buffers and the
    /// epoch count in the "liverseg.checkpoint" metadata entry.
    public func checkpointBytes() -> [UInt8] {
        let table = configuration.architecture.parameterTable
        let tensors =
            table.map { ($0.name, $0.shape, Array(parameters[$0.range])) }
            + table.map { ("velocity.\($0.name)", $0.shape, Array(velocity[$0.range])) }
        return safeTensorsBytes(
            tensors,
            metadata: [
                "liverseg.checkpoint": JSONValue.object([
                    ("epochs_done", .number(Double(epochsDone))), ("seed", .string(String(configuration.seed))),
                    ("spatial_augmentation", configuration.spatialAugmentation.json),
                ]).serialized
            ])
    }

    /// Restores parameters, momentum and epoch count from `checkpointBytes()` output of a
    /// run with the same architecture, seed and spatial augmentation.
    public func resume(fromCheckpoint bytes: [UInt8]) throws {
        let (params, velocity, epochs) = try bytes.withUnsafeBytes { raw in
            let file = try SafeTensorsFile.parse(raw)
            guard let text = file.metadata["liverseg.checkpoint"],
                let doc = try? parseJSON(Array(text.utf8)), let epochs = doc["epochs_done"]?.intValue
            else {
                throw LiversegError.invalidModel("not a liverseg checkpoint (no liverseg.checkpoint metadata)")
            }
            guard doc["seed"]?.stringValue == String(configuration.seed) else {
                throw LiversegError.invalidArgument(
                    "the checkpoint was made with seed \(doc["seed"]?.stringValue ?? "?"), not \(configuration.seed)")
            }
            // Checkpoints written before the elastic augmentation existed do not record theirs.
            if let recorded = doc["spatial_augmentation"], recorded != configuration.spatialAugmentation.json {
                throw LiversegError.invalidArgument(
                    "the checkpoint was made with another spatial augmentation (\(recorded.serialized)) than this run's "
                        + "(\(configuration.spatialAugmentation.json.serialized))")
            }
            var p: [Float] = [], v: [Float] = []
            for tensor in configuration.architecture.parameterTable {
                for key in [tensor.name, "velocity.\(tensor.name)"] {
                    guard let e = file.entry(key), e.dtype == "F32", e.shape == tensor.shape else {
                        throw LiversegError.invalidModel("checkpoint tensor \(key) is missing or has another shape")
                    }
                    let values = SafeTensorsFile.float32Values(e, in: raw)
                    if key == tensor.name { p += values } else { v += values }
                }
            }
            return (p, v, epochs)
        }
        self.parameters = params
        self.velocity = velocity
        self.epochsDone = epochs
    }
}

/// A value computed on a background thread, awaited with `value()`.
struct Prefetch<T> {
    private let box = Box()
    private final class Box: @unchecked Sendable {
        var result: Result<T, Error>?
        let done = DispatchSemaphore(value: 0)
    }

    init(_ work: @escaping () throws -> T) {
        let box = self.box
        DispatchQueue.global().async {
            box.result = Result { try work() }
            box.done.signal()
        }
    }

    /// Waits for the result (once).
    func value() throws -> T {
        box.done.wait()
        guard let result = box.result else { throw LiversegError.internalError("prefetch finished without a result") }
        return try result.get()
    }
}
