#if canImport(Glibc)
import Glibc
#endif
import LiversegSupport
import LiversegNetwork

/// How the network expects its input: grid, orientation and intensity scaling.
public struct Preprocessing: Equatable, Sendable {
    /// Voxel size of the model grid in mm, (x, y, z).
    public var spacing: [Double]
    /// Orientation of the model grid's axes.
    public var orientation: AxisCodes
    /// HU values are clipped to [lower, upper] ...
    public var huWindow: (lower: Double, upper: Double)
    /// ... then mapped to (hu − mean) / std.
    public var mean: Double
    /// See `mean`.
    public var std: Double

    /// Creates a description of a model grid and intensity mapping.
    public init(spacing: [Double], orientation: AxisCodes, huWindow: (lower: Double, upper: Double), mean: Double, std: Double) {
        self.spacing = spacing
        self.orientation = orientation
        self.huWindow = huWindow
        self.mean = mean
        self.std = std
    }

    /// The model grid and intensity mapping `liverseg train` uses unless told otherwise (the
    /// bundled model's first network's; its second runs at 4 mm): 3 mm isotropic, RAS, HU
    /// window [−200, 300] → (HU − 50)/125. Python's
    /// `liverseg.model_file.DEFAULT_PREPROCESSING` is held to it by a test.
    public static let `default` = Preprocessing(
        spacing: [3, 3, 3], orientation: AxisCodes("RAS")!, huWindow: (-200, 300), mean: 50, std: 125)

    public static func == (a: Preprocessing, b: Preprocessing) -> Bool {
        a.spacing == b.spacing && a.orientation == b.orientation && a.huWindow == b.huWindow && a.mean == b.mean && a.std == b.std
    }

    /// The network input value for a Hounsfield unit.
    @inlinable public func normalise(_ hu: Float) -> Float {
        (min(max(hu, Float(huWindow.lower)), Float(huWindow.upper)) - Float(mean)) / Float(std)
    }
}

/// One network of a model with the grid and intensity conventions it was trained on.
public struct ModelNetwork: Sendable {
    /// The network and its weights.
    public let network: DSNNetwork<Float>
    /// Its input grid and intensity conventions.
    public let preprocessing: Preprocessing
    /// Eq. 4 weights τ of branch 1 and branch 2; the main output gets 1 − τ1 − τ2.
    public let fusionTau: [Double]
    /// Its part of the metadata document: "architecture", "preprocessing", "fusion" and,
    /// when the file has one, its "provenance".
    public let section: JSONValue

    /// The architecture.
    public var architecture: DSNArchitecture { network.architecture }
}

/// A loaded, validated model: metadata plus one network — or several, an ensemble whose
/// fused probabilities `segment` averages on the CT's grid — with their weights. Immutable.
public final class Model: Sendable {
    /// The file format of a model with one network (the document's top level holds its
    /// sections, its tensors carry the architecture's names).
    public static let singleNetworkFormatVersion = 1
    /// The file format of an ensemble: the document's "networks" array holds each network's
    /// sections, and network k's tensors are named "networks.k." + the architecture's name.
    public static let ensembleFormatVersion = 2
    /// The most networks an ensemble file may hold.
    public static let maximumNetworks = 8
    /// Document keys that belong to one network, not to the model (the CRF, say).
    static let networkSectionKeys: Set<String> = ["architecture", "preprocessing", "fusion", "provenance"]

    /// The networks, at least one; `segment` averages their fused probabilities.
    public let networks: [ModelNetwork]
    /// The format version the file has (or `fileBytes` writes).
    public let formatVersion: Int
    /// The "liverseg" metadata document exactly as stored in the file.
    public let metadataJSON: String
    /// The same document, parsed (later stages, e.g. the CRF, read their sections here).
    public let metadata: JSONValue

    /// The first network: the one the single-network calls (the network's forward and loss,
    /// preprocessing onto its grid, `liverseg info`'s architecture) use.
    public var network: DSNNetwork<Float> { networks[0].network }
    /// The first network's input grid and intensity conventions.
    public var preprocessing: Preprocessing { networks[0].preprocessing }
    /// The first network's eq. 4 weights.
    public var fusionTau: [Double] { networks[0].fusionTau }
    /// The first network's architecture.
    public var architecture: DSNArchitecture { network.architecture }

    /// A model from trained parameters (e.g. by `Trainer`); `extraMetadata` adds sections
    /// such as "crf" or "provenance" to the metadata document.
    public init(
        network: DSNNetwork<Float>, preprocessing: Preprocessing, fusionTau: [Double],
        extraMetadata: [(String, JSONValue)] = []
    ) throws {
        guard fusionTau.count == 2, fusionTau.allSatisfy({ $0 >= 0 }), fusionTau[0] + fusionTau[1] <= 1 else {
            throw LiversegError.invalidArgument("fusion tau \(fusionTau) must be two non-negative weights summing to at most 1")
        }
        let a = network.architecture
        let sections: [(String, JSONValue)] = [
            (
                "architecture",
                .object([
                    ("name", .string("dsn3d")), ("in_channels", .number(Double(a.inChannels))),
                    ("conv_channels", .array(a.convChannels.map { .number(Double($0)) })),
                    ("conv_kernels", .array(a.convKernels.map { .array([$0.x, $0.y, $0.z].map { .number(Double($0)) }) })),
                    ("main_deconv_channels", .number(Double(a.mainDeconvChannels))),
                    ("branch2_deconv_channels", .number(Double(a.branch2DeconvChannels))),
                    ("classes", .number(Double(a.classes))),
                ])
            ),
            (
                "preprocessing",
                .object([
                    ("spacing_mm", .array(preprocessing.spacing.map { .number($0) })),
                    ("orientation", .string(preprocessing.orientation.description)),
                    ("hu_window", .array([.number(preprocessing.huWindow.lower), .number(preprocessing.huWindow.upper)])),
                    ("mean", .number(preprocessing.mean)), ("std", .number(preprocessing.std)),
                ])
            ),
            ("fusion", .object([("tau", .array(fusionTau.map { .number($0) }))])),
        ]
        let document = JSONValue.object(
            [("format_version", .number(Double(Model.singleNetworkFormatVersion)))] + sections + extraMetadata)
        let own = sections + extraMetadata.filter { Model.networkSectionKeys.contains($0.0) }
        networks = [ModelNetwork(network: network, preprocessing: preprocessing, fusionTau: fusionTau, section: .object(own))]
        formatVersion = Model.singleNetworkFormatVersion
        metadata = document
        metadataJSON = document.serialized
    }

    /// An ensemble of every network of `models`, in order. The model-wide sections (e.g.
    /// "crf") are the first model's, replaced or extended by `extraMetadata`; each network
    /// keeps its own sections, provenance included.
    public init(ensembleOf models: [Model], extraMetadata: [(String, JSONValue)] = []) throws {
        let networks = models.flatMap(\.networks)
        guard (2...Model.maximumNetworks).contains(networks.count) else {
            throw LiversegError.invalidArgument(
                "an ensemble needs 2 to \(Model.maximumNetworks) networks; these models hold \(networks.count)")
        }
        let extraKeys = Set(extraMetadata.map(\.0))
        let shared = (models[0].metadata.objectValue ?? []).filter {
            $0.0 != "format_version" && $0.0 != "networks" && !Model.networkSectionKeys.contains($0.0)
                && !extraKeys.contains($0.0)
        }
        let document = JSONValue.object(
            [
                ("format_version", .number(Double(Model.ensembleFormatVersion))),
                ("networks", .array(networks.map(\.section))),
            ] + shared + extraMetadata)
        self.networks = networks
        formatVersion = Model.ensembleFormatVersion
        metadata = document
        metadataJSON = document.serialized
    }

    /// The tensor-name prefix of network `index` in a file of `formatVersion`.
    static func tensorPrefix(network index: Int, formatVersion: Int) -> String {
        formatVersion == singleNetworkFormatVersion ? "" : "networks.\(index)."
    }

    /// The model file's bytes: every parameter as F32 plus the metadata document.
    public func fileBytes() -> [UInt8] {
        let tensors = networks.enumerated().flatMap { index, member in
            let prefix = Model.tensorPrefix(network: index, formatVersion: formatVersion)
            return member.network.parameters.map { (name: prefix + $0.name, shape: $0.shape, values: $0.values) }
        }
        return safeTensorsBytes(tensors, metadata: ["liverseg": metadataJSON])
    }

    /// Loads a model file from disk.
    public convenience init(contentsOfFile path: String) throws {
        let bytes = try readWholeFile(path)
        try self.init(bytes: bytes)
    }

    /// Parses and validates a model file's bytes. Pure apart from allocation.
    public init(bytes: [UInt8]) throws {
        let (networks, version, json, metadata) = try bytes.withUnsafeBytes { raw in
            let file = try SafeTensorsFile.parse(raw)
            guard let json = file.metadata["liverseg"] else {
                throw LiversegError.invalidModel("__metadata__ has no \"liverseg\" document; is this a liverseg model?")
            }
            let metadata: JSONValue
            do { metadata = try parseJSON(Array(json.utf8)) } catch {
                throw LiversegError.invalidModel("the liverseg metadata is not valid JSON: \(error)")
            }
            guard let version = metadata["format_version"]?.intValue else {
                throw LiversegError.invalidModel("metadata has no integer format_version")
            }
            let sections: [JSONValue]
            switch version {
            case Model.singleNetworkFormatVersion:
                sections = [.object((metadata.objectValue ?? []).filter { Model.networkSectionKeys.contains($0.0) })]
            case Model.ensembleFormatVersion:
                guard let list = metadata["networks"]?.arrayValue, (1...Model.maximumNetworks).contains(list.count) else {
                    throw invalid("format version 2 needs a \"networks\" array of 1 to \(Model.maximumNetworks) objects")
                }
                sections = list
            default:
                throw LiversegError.unsupported(
                    "model format version \(version); this build reads versions \(Model.singleNetworkFormatVersion) and \(Model.ensembleFormatVersion)"
                )
            }
            var known = Set<String>()
            let networks = try sections.enumerated().map { index, section in
                let prefix = Model.tensorPrefix(network: index, formatVersion: version)
                let place = version == Model.singleNetworkFormatVersion ? "" : "networks[\(index)]."
                let architecture = try parseArchitecture(section["architecture"], place: place)
                let preprocessing = try parsePreprocessing(section["preprocessing"], place: place)
                let tau = try parseTau(section["fusion"], place: place)
                var parameters: [Float] = []
                parameters.reserveCapacity(architecture.parameterCount)
                for (name, shape) in architecture.parameterShapes {
                    let name = prefix + name
                    known.insert(name)
                    guard let entry = file.entry(name) else { throw invalid("tensor \"\(name)\" is missing") }
                    guard entry.dtype == "F32" else {
                        throw invalid("tensor \"\(name)\" has dtype \(entry.dtype); liverseg models store F32")
                    }
                    guard entry.shape == shape else {
                        throw invalid("tensor \"\(name)\" has shape \(entry.shape) but the architecture needs \(shape)")
                    }
                    let values = SafeTensorsFile.float32Values(entry, in: raw)
                    if let bad = values.firstIndex(where: { !$0.isFinite }) {
                        throw invalid("tensor \"\(name)\" has a non-finite value at flat index \(bad)")
                    }
                    parameters += values
                }
                return ModelNetwork(
                    network: try DSNNetwork(architecture: architecture, parameters: parameters),
                    preprocessing: preprocessing, fusionTau: tau, section: section)
            }
            if let extra = file.entries.first(where: { !known.contains($0.name) }) {
                throw invalid("tensor \"\(extra.name)\" is not part of the architecture")
            }
            return (networks, version, json, metadata)
        }
        self.networks = networks
        self.formatVersion = version
        self.metadataJSON = json
        self.metadata = metadata
    }
}

private func invalid(_ m: String) -> LiversegError { .invalidModel(m) }

private func intArray(_ v: JSONValue?, _ what: String, count: Int? = nil) throws -> [Int] {
    guard let a = v?.arrayValue else { throw invalid("\(what) is missing or not an array") }
    let ints = a.compactMap(\.intValue)
    guard ints.count == a.count else { throw invalid("\(what) must hold integers") }
    if let count, ints.count != count { throw invalid("\(what) needs \(count) entries, got \(ints.count)") }
    return ints
}

private func doubleArray(_ v: JSONValue?, _ what: String, count: Int) throws -> [Double] {
    guard let a = v?.arrayValue else { throw invalid("\(what) is missing or not an array") }
    let values = a.compactMap(\.numberValue)
    guard values.count == a.count, values.count == count else { throw invalid("\(what) needs \(count) numbers") }
    return values
}

private func parseArchitecture(_ v: JSONValue?, place: String) throws -> DSNArchitecture {
    guard let v, v.objectValue != nil else { throw invalid("metadata has no \(place)architecture object") }
    guard v["name"]?.stringValue == "dsn3d" else {
        throw LiversegError.unsupported("architecture name \(v["name"]?.serialized ?? "missing"); this build knows \"dsn3d\"")
    }
    guard let kernels = v["conv_kernels"]?.arrayValue, kernels.count == 6 else {
        throw invalid("\(place)architecture.conv_kernels needs 6 [x, y, z] entries")
    }
    let sizes = try kernels.enumerated().map { i, k in
        let e = try intArray(k, "\(place)architecture.conv_kernels[\(i)]", count: 3)
        return GridSize(x: e[0], y: e[1], z: e[2])
    }
    func int(_ key: String) throws -> Int {
        guard let n = v[key]?.intValue else { throw invalid("\(place)architecture.\(key) is missing or not an integer") }
        return n
    }
    let a = DSNArchitecture(
        inChannels: try int("in_channels"),
        convChannels: try intArray(v["conv_channels"], "\(place)architecture.conv_channels", count: 6),
        convKernels: sizes, mainDeconvChannels: try int("main_deconv_channels"),
        branch2DeconvChannels: try int("branch2_deconv_channels"), classes: try int("classes"))
    try a.validate()
    return a
}

private func parsePreprocessing(_ v: JSONValue?, place: String) throws -> Preprocessing {
    guard let v, v.objectValue != nil else { throw invalid("metadata has no \(place)preprocessing object") }
    let spacing = try doubleArray(v["spacing_mm"], "\(place)preprocessing.spacing_mm", count: 3)
    guard spacing.allSatisfy({ $0.isFinite && $0 > 0 && $0 < 100 }) else {
        throw invalid("\(place)preprocessing.spacing_mm \(spacing) must be in (0, 100) mm")
    }
    guard let code = v["orientation"]?.stringValue, let orientation = AxisCodes(code) else {
        throw invalid("\(place)preprocessing.orientation must be three axis codes such as \"RAS\"")
    }
    let window = try doubleArray(v["hu_window"], "\(place)preprocessing.hu_window", count: 2)
    guard window[0] < window[1] else { throw invalid("\(place)preprocessing.hu_window \(window) must be increasing") }
    guard let mean = v["mean"]?.numberValue, let std = v["std"]?.numberValue, std > 0 else {
        throw invalid("\(place)preprocessing.mean and preprocessing.std (> 0) are required")
    }
    let preprocessing = Preprocessing(
        spacing: spacing, orientation: orientation, huWindow: (window[0], window[1]), mean: mean, std: std)
    // Normalisation runs in float32: values finite as doubles (mean 1e308, std 1e-300) can
    // still give ±Inf or NaN network inputs. The window's ends bound every input.
    let range = [preprocessing.normalise(-.infinity), preprocessing.normalise(.infinity)]
    guard range.allSatisfy(\.isFinite) else {
        throw invalid(
            "\(place)preprocessing hu_window \(window), mean \(mean), std \(std) give non-finite float32 network inputs \(range)")
    }
    return preprocessing
}

private func parseTau(_ v: JSONValue?, place: String) throws -> [Double] {
    let tau = try doubleArray(v?["tau"], "\(place)fusion.tau", count: 2)
    guard tau.allSatisfy({ $0 >= 0 }), tau[0] + tau[1] <= 1 else {
        throw invalid("\(place)fusion.tau \(tau) must be non-negative with a sum of at most 1")
    }
    return tau
}
