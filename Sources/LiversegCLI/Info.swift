import ArgumentParser
import LiversegDICOM
import LiversegSupport
import LiversegImageIO
import LiversegVolume
import LiversegPipeline

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Describe an image file or DICOM series (grid, geometry, voxel type) or a model file (architecture, metadata).",
        discussion: """
            A DICOM series is given as a folder (its largest axial CT series, or --series UID) or \
            as one of its files, and described as the volume `liverseg segment` reads: slices \
            ordered along their normal, rescaled to HU, with the geometry in RAS.
            """)

    @Argument(help: "An image file, a DICOM folder or file, or a model file (.safetensors).")
    var file: String

    @Option(help: "DICOM: describe the series with this SeriesInstanceUID.")
    var series: String?

    @Flag(help: "Print one JSON document instead of text.")
    var json = false

    func run() throws {
        try reportingErrors {
            let fields = file.lowercased().hasSuffix(".safetensors") ? try modelFields() : try imageFields()
            if json {
                print(JSONValue.object(fields).serialized)
            } else {
                printReadably(fields, indent: "")
            }
        }
    }

    /// Fields as text, one per line: an object (such as a model's metadata) as an indented
    /// block, and an array of objects (such as an ensemble's networks) as one numbered block each.
    private func printReadably(_ fields: [(String, JSONValue)], indent: String) {
        for (key, value) in fields {
            switch value {
            case .object(let members):
                print(indent + key)
                printReadably(members, indent: indent + "  ")
            case .array(let items) where !items.isEmpty && items.allSatisfy({ if case .object = $0 { true } else { false } }):
                for case (let k, .object(let members)) in items.enumerated() {
                    print(indent + "\(key) \(k + 1) of \(items.count)")
                    printReadably(members, indent: indent + "  ")
                }
            default:
                let width = max(28 - indent.count, key.count + 2)
                print(indent + key.rightPadded(to: width) + readableText(value))
            }
        }
    }

    /// A scalar or an array as text: strings bare, numbers rounded as people read them (JSON
    /// keeps every digit).
    private func readableText(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): return s
        case .number(let n): return n.readable
        case .array(let a): return "[" + a.map(readableText).joined(separator: ", ") + "]"
        default: return value.serialized
        }
    }

    private func numbers(_ values: [Double]) -> JSONValue { .array(values.map { .number($0) }) }

    private func imageFields() throws -> [(String, JSONValue)] {
        let input = try CTInput(file, series: series)
        let image = input.image
        var source: [(String, JSONValue)] = [
            ("format", .string(input.dicom == nil ? try ImageFormat(path: file).rawValue : "dicom"))
        ]
        if let dicom = input.dicom {
            source += [
                ("series_uid", .string(dicom.series.uid)), ("modality", .string(dicom.series.modality)),
                ("series_description", .string(dicom.series.description)),
                ("other_series", .array(dicom.others.map { .string($0.uid) })),
            ]
        }
        var lo = Double.infinity, hi = -Double.infinity, nonzero = 0
        for i in 0..<image.size.voxelCount {
            let v = image.intensity(at: i)
            lo = min(lo, v); hi = max(hi, v)
            if v != 0 { nonzero += 1 }
        }
        let m = image.ijkToRAS
        let orientation = (try? AxisMapping.axisCodes(ofIJKToRAS: m).description) ?? "oblique"
        return [
            ("file", .string(file))
        ] + source + [
            ("dtype", .string(image.voxelType.rawValue)),
            ("size", .array([image.size.x, image.size.y, image.size.z].map { .number(Double($0)) })),
            ("spacing_mm", numbers(image.spacing)),
            ("origin_ras_mm", numbers([m[3], m[7], m[11]])),
            ("orientation", .string(orientation)),
            ("ijk_to_ras", .array((0..<4).map { r in numbers(Array(m[(r * 4)..<(r * 4 + 4)])) })),
            ("scl_slope", .number(image.slope)),
            ("scl_inter", .number(image.intercept)),
            ("min", .number(lo)),
            ("max", .number(hi)),
            ("nonzero_voxels", .number(Double(nonzero))),
        ]
    }

    private func modelFields() throws -> [(String, JSONValue)] {
        let model = try Model(contentsOfFile: file)
        return [
            ("file", .string(file)),
            ("format", .string("liverseg model (safetensors), format version \(model.formatVersion)")),
            ("networks", .array(model.networks.map { .object(networkFields($0)) })),
            ("metadata", model.metadata),
        ]
    }

    /// One network's architecture, grid and intensity conventions.
    private func networkFields(_ member: ModelNetwork) -> [(String, JSONValue)] {
        let a = member.architecture, p = member.preprocessing
        return [
            ("architecture", .string("dsn3d")),
            ("conv_channels", .array(a.convChannels.map { .number(Double($0)) })),
            ("conv_kernels", .array(a.convKernels.map { .array([$0.x, $0.y, $0.z].map { .number(Double($0)) }) })),
            ("main_deconv_channels", .number(Double(a.mainDeconvChannels))),
            ("branch2_deconv_channels", .number(Double(a.branch2DeconvChannels))),
            ("classes", .number(Double(a.classes))),
            ("parameters", .number(Double(a.parameterCount))),
            ("spacing_mm", numbers(p.spacing)),
            ("orientation", .string(p.orientation.description)),
            ("hu_window", numbers([p.huWindow.lower, p.huWindow.upper])),
            ("intensity_mean", .number(p.mean)),
            ("intensity_std", .number(p.std)),
            ("fusion_tau", numbers(member.fusionTau)),
        ]
    }
}
