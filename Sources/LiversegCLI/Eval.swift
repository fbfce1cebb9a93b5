import ArgumentParser
import LiversegSupport
import LiversegImageIO
import LiversegPipeline
import LiversegTraining

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare segmentations with references: SLiver07 measures and scores, Dice, HD95.",
        discussion: """
            VOE and VD in %, surface distances in mm (voxel spacing applied, symmetric, pooled over \
            both directions). VD is signed: positive when the segmentation is larger. HD95 is the \
            95th percentile of the pooled distances (MedPy's convention). Scores: \
            max(0, 100 − 25·m/m_ref) with m_ref = VOE 6.4 %, |VD| 4.7 %, AvgD 1 mm, RMSD 1.8 mm, \
            MaxD 19 mm; the total is their mean. With several pairs, mean and sample standard \
            deviation follow. An empty mask gives infinite distances (null in JSON) and score 0.
            """)

    @Argument(help: "SEG REF pairs: one or more segmentation and reference masks, each pair on one grid.")
    var files: [String]

    @Flag(help: "Print one JSON document instead of a table.")
    var json = false

    @Option(help: "Neighbours that make an object voxel a border voxel: 6, 18 (SLiver07's program) or 26.")
    var connectivity = 18

    @Option(help: "Worker threads; 0 = all cores.")
    var threads = 0

    @Option(help: "Write a PNG of the first pair: the segmentation outline in red, the reference in green.")
    var preview: String?

    @Option(help: "The CT shown under the outlines in --preview: an image file or a DICOM folder or file (default: black).")
    var ct: String?

    @Option(help: "DICOM: the SeriesInstanceUID of --ct's series.")
    var ctSeries: String?

    @Flag(help: "No progress bar.")
    var quiet = false

    func validate() throws {
        guard files.count >= 2, files.count % 2 == 0 else {
            throw ValidationError("give SEG REF pairs: an even number of files, at least two")
        }
        guard BorderConnectivity(rawValue: connectivity) != nil else {
            throw ValidationError("--connectivity must be 6, 18 or 26")
        }
        guard threads >= 0 else { throw ValidationError("--threads must be 0 (all cores) or more") }
        guard ctSeries == nil || ct != nil else { throw ValidationError("--ct-series needs --ct") }
    }

    func run() throws {
        try reportingErrors {
            let neighbourhood = BorderConnectivity(rawValue: connectivity) ?? .edges
            let progress = ProgressBar(quiet: quiet)
            defer { progress.finish() }
            var results: [(seg: String, ref: String, metrics: SegmentationMetrics)] = []
            let pairs = stride(from: 0, to: files.count, by: 2).map { (files[$0], files[$0 + 1]) }
            for (n, (segPath, refPath)) in pairs.enumerated() {
                progress.update("evaluating", Double(n) / Double(pairs.count))
                let seg = try readImage(segPath), ref = try readImage(refPath)
                guard seg.size == ref.size else {
                    throw LiversegError.invalidArgument(
                        "\(segPath) is \(seg.size) but \(refPath) is \(ref.size); masks must share one grid")
                }
                guard seg.hasSameGeometry(as: ref, tolerance: 1e-3 * max(1, seg.spacing.max() ?? 1)) else {
                    throw LiversegError.invalidArgument(
                        "\(segPath) and \(refPath) have different IJK→RAS matrices; masks must share one grid")
                }
                let (a, b) = (seg.mask(), ref.mask())
                let metrics = try evaluateSegmentation(
                    a, b, size: seg.size, spacing: seg.spacing, connectivity: neighbourhood, threads: threads)
                results.append((segPath, refPath, metrics))
                if n == 0, let preview {
                    let background =
                        try ct.map { try CTInput($0, series: ctSeries, threads: threads).image }
                        ?? seg.withVoxels([Int16](repeating: -1024, count: seg.size.voxelCount))
                    guard background.size == seg.size else {
                        throw LiversegError.invalidArgument(
                            "--ct \(ct ?? "") is \(background.size) but the masks are \(seg.size)")
                    }
                    try writeFileAtomically(try Preview().render(background, mask: a, reference: b).pngData(), to: preview)
                }
            }
            progress.update("evaluating", 1)
            progress.finish()
            print(json ? jsonReport(results).serialized : textReport(results))
        }
    }

    /// The measures reported per case, in table order: title, unit, JSON key (as
    /// liverseg.evaluate in Python names them; scores under "scores") and value.
    private static let columns: [(name: String, unit: String, key: String, value: (SegmentationMetrics) -> Double)] = [
        ("Dice", "", "dice", { $0.dice }), ("VOE", "%", "voe", { $0.voe }), ("VD", "%", "vd", { $0.vd }),
        ("AvgD", "mm", "avg_d", { $0.avgD }), ("RMSD", "mm", "rms_d", { $0.rmsD }), ("MaxD", "mm", "max_d", { $0.maxD }),
        ("HD95", "mm", "hd95", { $0.hd95 }),
        ("score VOE", "", "scores.voe", { $0.scores.voe }), ("score VD", "", "scores.vd", { $0.scores.vd }),
        ("score AvgD", "", "scores.avg_d", { $0.scores.avgD }), ("score RMSD", "", "scores.rms_d", { $0.scores.rmsD }),
        ("score MaxD", "", "scores.max_d", { $0.scores.maxD }), ("score", "", "scores.total", { $0.scores.total }),
    ]

    private func meanAndSD(_ values: [Double]) -> (Double, Double) {
        let mean = values.reduce(0, +) / Double(values.count)
        guard values.count > 1, mean.isFinite else { return (mean, values.count > 1 ? .nan : 0) }
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)
        return (mean, variance.squareRoot())
    }

    private func textReport(_ results: [(seg: String, ref: String, metrics: SegmentationMetrics)]) -> String {
        func cell(_ v: Double) -> String {
            (v.isFinite ? formatted(v, "%.4f") : v > 0 ? "inf" : "n/a").leftPadded(to: 10)
        }
        let names = results.map { lastPathComponent($0.seg) }
        let width = max(12, (names.map(\.count).max() ?? 0) + 2)
        func label(_ s: String) -> String { s.rightPadded(to: width) }
        var lines = [
            label("case")
                + Self.columns.map { c in
                    let title = c.unit.isEmpty ? c.name : "\(c.name)[\(c.unit)]"
                    return String(repeating: " ", count: max(0, 10 - title.count)) + title
                }.joined(separator: " ")
        ]
        for (name, r) in zip(names, results) {
            lines.append(label(name) + Self.columns.map { cell($0.value(r.metrics)) }.joined(separator: " "))
        }
        if results.count > 1 {
            let stats = Self.columns.map { c in meanAndSD(results.map { c.value($0.metrics) }) }
            lines.append(label("mean") + stats.map { cell($0.0) }.joined(separator: " "))
            lines.append(label("sd") + stats.map { cell($0.1) }.joined(separator: " "))
        }
        lines.append("")
        lines.append(
            "border connectivity \(connectivity); HD95 = 95th percentile of the pooled surface distances (MedPy); scores as SLiver07 (Heimann et al. 2009)"
        )
        return lines.joined(separator: "\n")
    }

    /// `members` with keys "a.b" gathered into nested objects, in first-seen order.
    private func nested(_ members: [(String, JSONValue)]) -> JSONValue {
        var top: [(String, JSONValue)] = [], groups: [(String, [(String, JSONValue)])] = []
        for (key, value) in members {
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { top.append((key, value)); continue }
            if let g = groups.firstIndex(where: { $0.0 == parts[0] }) {
                groups[g].1.append((parts[1], value))
            } else {
                groups.append((parts[0], [(parts[1], value)])); top.append((parts[0], .null))
            }
        }
        return .object(
            top.map { key, value in
                guard let group = groups.first(where: { $0.0 == key }) else { return (key, value) }
                return (key, .object(group.1))
            })
    }

    private func jsonReport(_ results: [(seg: String, ref: String, metrics: SegmentationMetrics)]) -> JSONValue {
        func number(_ v: Double) -> JSONValue { v.isFinite ? .number(v) : .null }
        let cases: [JSONValue] = results.map { r in
            nested(
                [("segmentation", .string(r.seg)), ("reference", .string(r.ref))]
                    + Self.columns.map { ($0.key, number($0.value(r.metrics))) }
                    + [
                        ("segmentation_voxels", .number(Double(r.metrics.segmentationVoxels))),
                        ("reference_voxels", .number(Double(r.metrics.referenceVoxels))),
                    ])
        }
        let summary = nested(
            Self.columns.map { c in
                let (mean, sd) = meanAndSD(results.map { c.value($0.metrics) })
                return (c.key, .object([("mean", number(mean)), ("sd", number(sd))]))
            })
        return .object([
            ("connectivity", .number(Double(connectivity))),
            ("hd95_convention", .string("95th percentile of the pooled distances of both directions (MedPy hd95)")),
            ("cases", .array(cases)),
            ("summary", summary),
        ])
    }
}
