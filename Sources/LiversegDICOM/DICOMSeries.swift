import LiversegImageIO
import LiversegSupport

/// One series found among the files: its UID, what its first slice says, its slice count.
public struct DICOMSeriesSummary: Equatable, Sendable {
    public let uid: String
    public let modality: String
    public let description: String
    public let slices: Int
    /// "axial", "coronal" or "sagittal": the patient axis closest to the slice normal, or
    /// "oblique" when none is within 25.8° (|cos| ≤ 0.9).
    public let orientation: String

    /// Whether liverseg reads the series when it chooses one itself: axial CT.
    public var isAxialCT: Bool { modality == "CT" && orientation == "axial" }

    /// "UID (CT, 20 slices, axial, "CT Body 3.0")".
    public var label: String {
        let quoted = description.isEmpty ? "" : ", \"\(description)\""
        return "\(uid.isEmpty ? "(no SeriesInstanceUID)" : uid) (\(modality.isEmpty ? "no modality" : modality), "
            + "\(slices) slice\(slices == 1 ? "" : "s"), \(orientation)\(quoted))"
    }
}

/// A series chosen from a folder (or a file's series), its slices ordered along their
/// normal and checked to stack evenly, with the volume's geometry: what `read` decodes.
public struct DICOMSeriesPlan: Sendable {
    /// The folder or file named by the user.
    public let path: String
    public let series: DICOMSeriesSummary
    /// The other series in the folder, largest first.
    public let others: [DICOMSeriesSummary]
    /// A note for the user when liverseg chose among several series (which, why, the others).
    public let note: String?
    /// Row-major 4×4 IJK→RAS of the volume (i along rows, j along columns, k along the normal).
    public let ijkToRAS: [Double]
    /// The slices in volume order (k).
    package let slices: [DICOMSlice]
}

// MARK: - Vectors

private func dot(_ a: [Double], _ b: [Double]) -> Double { a[0] * b[0] + a[1] * b[1] + a[2] * b[2] }

private func cross(_ a: [Double], _ b: [Double]) -> [Double] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// The slice normal (row × column direction) of an ImageOrientationPatient.
private func normal(_ orientation: [Double]) -> [Double] { cross(Array(orientation[0..<3]), Array(orientation[3..<6])) }

/// The patient axis a slice normal is closest to, as a plane name.
private func planeName(_ orientation: [Double]) -> String {
    let n = normal(orientation)
    if abs(n[2]) > 0.9 { return "axial" }
    if abs(n[1]) > 0.9 { return "coronal" }
    if abs(n[0]) > 0.9 { return "sagittal" }
    return "oblique"
}

/// Millimetres for messages: at most 3 decimals, no trailing zeros.
private func mm(_ value: Double) -> String {
    var text = formatted(value, "%.3f")
    while text.hasSuffix("0") { text.removeLast() }
    if text.hasSuffix(".") { text.removeLast() }
    return text == "-0" ? "0" : text
}

// MARK: - Choosing a series

/// Groups slices into series (in order of first appearance) and chooses one: `requested`
/// by UID; else the series of `fileSeries` (a file the user named); else the axial CT series
/// with the most slices (ties: the first found), with a note naming it and the others.
/// `path` names the folder or file in messages; `scan` tells why there may be no slices.
package func planSeries(
    _ scan: DICOMScan, path: String, requested: String?, fileSeries: String? = nil
) throws
    -> DICOMSeriesPlan
{
    guard !scan.slices.isEmpty else {
        if scan.multiFrameFiles > 0 {
            throw LiversegError.unsupported(
                "\(path): \(scan.multiFrameFiles) multi-frame (enhanced) DICOM image file\(scan.multiFrameFiles == 1 ? "" : "s") "
                    + "and no single-frame image slices; liverseg reads series of single-frame slices")
        }
        if scan.dicomFiles > 0 {
            throw LiversegError.invalidArgument(
                "\(path): \(scan.dicomFiles) DICOM file\(scan.dicomFiles == 1 ? "" : "s") but no image slices "
                    + "(none has ImagePositionPatient, ImageOrientationPatient, Rows and Columns)")
        }
        throw LiversegError.invalidArgument("\(path): no DICOM files")
    }
    var order: [String] = []
    var groups: [String: [DICOMSlice]] = [:]
    for slice in scan.slices {
        if groups[slice.seriesUID] == nil { order.append(slice.seriesUID) }
        groups[slice.seriesUID, default: []].append(slice)
    }
    /// The first slice of each series whose header is usable (for its orientation).
    func usable(_ uid: String) -> DICOMSlice? { groups[uid]?.first { $0.problem == nil } }
    let summaries = order.map { uid -> DICOMSeriesSummary in
        let slices = groups[uid] ?? []
        return DICOMSeriesSummary(
            uid: uid, modality: slices[0].modality, description: slices[0].seriesDescription, slices: slices.count,
            orientation: usable(uid).map { planeName($0.orientation) } ?? "unreadable")
    }
    // Largest first (a stable sort keeps the order found among equals).
    let bySize = summaries.enumerated().sorted { ($0.element.slices, -$0.offset) > ($1.element.slices, -$1.offset) }
        .map(\.element)
    let chosen: DICOMSeriesSummary
    var note: String?
    if let wanted = requested ?? fileSeries {
        guard let found = summaries.first(where: { $0.uid == wanted }) else {
            throw LiversegError.invalidArgument(
                "\(path): no series \(wanted); there \(summaries.count == 1 ? "is" : "are") "
                    + bySize.map(\.label).joined(separator: ", "))
        }
        if let requested, let fileSeries, requested != fileSeries {
            throw LiversegError.invalidArgument("\(path) belongs to series \(fileSeries), not to --series \(requested)")
        }
        chosen = found
    } else {
        guard let largest = bySize.first(where: \.isAxialCT) else {
            throw LiversegError.unsupported(
                "\(path): no axial CT series among "
                    + (summaries.count == 1 ? "its one series: " : "its \(summaries.count) series: ")
                    + bySize.map(\.label).joined(separator: ", ") + "; liverseg reads axial CT")
        }
        chosen = largest
        if summaries.count > 1 {
            note =
                "\(path) holds \(summaries.count) series; reading \(chosen.label), the largest axial CT series "
                + "(--series UID reads another). Others: " + bySize.filter { $0 != chosen }.map(\.label).joined(separator: ", ")
        }
    }
    let name = "\(path) series \(chosen.uid.isEmpty ? "(no SeriesInstanceUID)" : chosen.uid)"
    if let problem = groups[chosen.uid]?.first(where: { $0.problem != nil })?.problem {
        throw LiversegError.invalidArgument(problem)
    }
    guard chosen.orientation == "axial" else {
        throw LiversegError.unsupported(
            "\(name) is \(chosen.orientation), not axial (slice normal "
                + normal(usable(chosen.uid)?.orientation ?? [1, 0, 0, 0, 1, 0]).map(mm).joined(separator: ", ")
                + " in LPS); liverseg reads axial CT series")
    }
    let (sorted, matrix) = try stackSlices(groups[chosen.uid] ?? [], name: name)
    return DICOMSeriesPlan(
        path: path, series: chosen, others: bySize.filter { $0 != chosen }, note: note, ijkToRAS: matrix,
        slices: sorted)
}

// MARK: - Stacking slices

/// Orders the slices of one series along their normal and checks that they form one
/// volume: the same orientation, size and pixel spacing, one frame and one sample per
/// pixel, evenly spaced positions (no gap, no duplicate) stacked along the normal (no
/// gantry tilt). Returns them in volume order with the volume's IJK→RAS matrix: columns
/// along a row times the spacing between columns, rows along a column times the spacing
/// between rows, the normal times the slice step, the first slice's position (DICOM's LPS
/// with x and y negated for RAS). The rules are those of liverseg.read_dicom in Python.
package func stackSlices(_ slices: [DICOMSlice], name: String) throws -> (slices: [DICOMSlice], ijkToRAS: [Double]) {
    guard let first = slices.first else { throw LiversegError.invalidArgument("\(name): no slices") }
    if let problem = slices.first(where: { $0.problem != nil })?.problem { throw LiversegError.invalidArgument(problem) }
    for slice in slices {
        guard slice.frames == 1 else {
            throw LiversegError.unsupported(
                "\(slice.path): \(slice.frames) frames; liverseg reads series of single-frame slices")
        }
        guard slice.samplesPerPixel == 1 else {
            throw LiversegError.unsupported("\(slice.path): \(slice.samplesPerPixel) samples per pixel (colour); CT has one")
        }
        guard [8, 16, 32].contains(slice.bitsAllocated) else {
            throw LiversegError.unsupported("\(slice.path): BitsAllocated \(slice.bitsAllocated) (8, 16 or 32 are read)")
        }
        guard zip(slice.orientation, first.orientation).allSatisfy({ abs($0 - $1) <= 1e-4 }),
            (slice.rows, slice.columns) == (first.rows, first.columns)
        else {
            throw LiversegError.invalidArgument("\(name): slices differ in orientation or size (\(slice.path))")
        }
        guard slice.pixelSpacing == first.pixelSpacing else {
            throw LiversegError.invalidArgument("\(name): slices differ in pixel spacing (\(slice.path))")
        }
        guard slice.rows >= 1, slice.columns >= 1 else {
            throw LiversegError.invalidArgument("\(slice.path): \(slice.rows) rows and \(slice.columns) columns")
        }
        guard slice.slope.isFinite, slice.slope != 0, slice.intercept.isFinite else {
            throw LiversegError.invalidArgument(
                "\(slice.path): RescaleSlope \(slice.slope), RescaleIntercept \(slice.intercept) (slope must be non-zero)")
        }
    }
    guard let pixelSpacing = first.pixelSpacing, pixelSpacing.allSatisfy({ $0 > 0 }) else {
        throw LiversegError.invalidArgument(
            "\(name): \(first.pixelSpacing == nil ? "no PixelSpacing" : "PixelSpacing \(first.pixelSpacing ?? [])")")
    }
    let row = Array(first.orientation[0..<3]), column = Array(first.orientation[3..<6])
    let n = normal(first.orientation)
    guard abs(dot(n, n) - 1) < 0.01, abs(dot(row, column)) < 0.01 else {
        throw LiversegError.invalidArgument(
            "\(name): ImageOrientationPatient \(first.orientation) is not two orthogonal unit vectors")
    }
    let sorted = slices.enumerated().sorted { a, b in
        let (da, db) = (dot(a.element.position, n), dot(b.element.position, n))
        return da != db ? da < db : a.offset < b.offset
    }.map(\.element)
    let depth = sorted.map { dot($0.position, n) }
    let step: Double
    if sorted.count > 1 {
        for k in 1..<sorted.count where abs(depth[k] - depth[k - 1]) < 1e-3 {
            throw LiversegError.invalidArgument(
                "\(name): two slices at the same position \(mm(depth[k])) mm along the normal "
                    + "(\(sorted[k - 1].path), \(sorted[k].path)): a duplicate slice or two series with one UID?")
        }
        let first = sorted[0].position, last = sorted[sorted.count - 1].position
        step = dot(zip(last, first).map { $0 - $1 }, n) / Double(sorted.count - 1)
        // Every step within 1 % of the mean; the message names the step furthest from it.
        let steps = (1..<sorted.count).map { depth[$0] - depth[$0 - 1] }
        if let k = steps.indices.max(by: { abs(steps[$0] - step) < abs(steps[$1] - step) }),
            abs(steps[k] - step) > 0.01 * step
        {
            let typical = steps.sorted()[steps.count / 2]
            throw LiversegError.invalidArgument(
                "\(name): slices are not evenly spaced: \(mm(steps[k])) mm between \(sorted[k].path) and "
                    + "\(sorted[k + 1].path) where most are \(mm(typical)) mm apart (a missing slice?)")
        }
        let tolerance = 0.01 * step * Double(sorted.count)
        for slice in sorted {
            let offset = zip(slice.position, first).map { $0 - $1 }
            let along = dot(offset, n)
            if zip(offset, n).contains(where: { abs($0 - along * $1) > tolerance }) {
                throw LiversegError.unsupported(
                    "\(name): slices do not stack along their normal (\(slice.path)): gantry tilt is not corrected")
            }
        }
    } else {
        step = first.spacingBetweenSlices ?? first.sliceThickness ?? 1
        guard step > 0, step.isFinite else {
            throw LiversegError.invalidArgument("\(name): one slice with spacing \(step) mm")
        }
    }
    let origin = sorted[0].position
    // LPS columns: i along a row (spacing between columns: PixelSpacing[1]), j along a column.
    let axes = [row.map { $0 * pixelSpacing[1] }, column.map { $0 * pixelSpacing[0] }, n.map { $0 * step }]
    var m = [Double](repeating: 0, count: 16)
    let flip: [Double] = [-1, -1, 1]
    for r in 0..<3 {
        // + 0 turns the −0 of a negated zero into 0 (the file a NIfTI writer produces is then
        // the same byte for byte as from the series' NIfTI conversion).
        for c in 0..<3 { m[r * 4 + c] = flip[r] * axes[c][r] + 0 }
        m[r * 4 + 3] = flip[r] * origin[r] + 0
    }
    m[15] = 1
    return (sorted, m)
}
