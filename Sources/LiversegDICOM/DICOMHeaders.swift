#if canImport(Glibc)
import Glibc
#endif
import CDICOM
import LiversegSupport

/// What liverseg reads from one DICOM image file's header: enough to group files into
/// series, order them and place them in the patient.
package struct DICOMSlice: Equatable, Sendable {
    package var path: String
    package var seriesUID: String
    package var modality: String
    package var seriesDescription: String
    /// Position of the first transmitted voxel's centre, LPS mm (ImagePositionPatient).
    package var position: [Double]
    /// Direction cosines of a row, then of a column (ImageOrientationPatient), LPS.
    package var orientation: [Double]
    package var rows: Int
    package var columns: Int
    /// Spacing between rows, then between columns, mm (PixelSpacing); nil when absent.
    package var pixelSpacing: [Double]?
    package var slope: Double
    package var intercept: Double
    package var frames: Int
    package var samplesPerPixel: Int
    package var bitsAllocated: Int
    package var spacingBetweenSlices: Double?
    package var sliceThickness: Double?
    /// Why the header cannot be used (a malformed value), or nil. Such a slice still counts
    /// in its series; reading that series is an error with this message, other series are not
    /// concerned.
    package var problem: String?

    package init(
        path: String, seriesUID: String, modality: String = "CT", seriesDescription: String = "",
        position: [Double], orientation: [Double] = [1, 0, 0, 0, 1, 0], rows: Int, columns: Int,
        pixelSpacing: [Double]? = [1, 1], slope: Double = 1, intercept: Double = 0, frames: Int = 1,
        samplesPerPixel: Int = 1, bitsAllocated: Int = 16, spacingBetweenSlices: Double? = nil,
        sliceThickness: Double? = nil
    ) {
        self.path = path
        self.seriesUID = seriesUID
        self.modality = modality
        self.seriesDescription = seriesDescription
        self.position = position
        self.orientation = orientation
        self.rows = rows
        self.columns = columns
        self.pixelSpacing = pixelSpacing
        self.slope = slope
        self.intercept = intercept
        self.frames = frames
        self.samplesPerPixel = samplesPerPixel
        self.bitsAllocated = bitsAllocated
        self.spacingBetweenSlices = spacingBetweenSlices
        self.sliceThickness = sliceThickness
    }
}

/// The DICOM files among a list of files, as GDCM's Scanner reads their headers.
package struct DICOMScan {
    /// Files read as DICOM that are image slices (ImagePositionPatient, ImageOrientationPatient,
    /// Rows and Columns present), in the order given.
    package var slices: [DICOMSlice] = []
    /// How many files were read as DICOM (slices and others: reports, enhanced multi-frame
    /// images whose geometry sits in functional groups, …).
    package var dicomFiles = 0
    /// How many of the DICOM files that are not slices declare several frames or an enhanced
    /// image storage class (multi-frame DICOM, not supported).
    package var multiFrameFiles = 0
}

/// SOP classes of enhanced (multi-frame) CT, MR and PET images.
private let enhancedSOPClasses: Set<String> = [
    "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2", "1.2.840.10008.5.1.4.1.1.4.1",
    "1.2.840.10008.5.1.4.1.1.4.3", "1.2.840.10008.5.1.4.1.1.128.1",
]

/// A DICOM text value without its padding (spaces and NULs at either end).
private func trimmed(_ value: String) -> String {
    value.trimmingWhitespace(and: ["\0"])
}

/// A header value that is not what its attribute must hold.
private enum MalformedValue: Error { case message(String) }

/// Reads the headers of `paths` (regular files) with GDCM.
package func scanDICOMFiles(_ paths: [String]) throws -> DICOMScan {
    var scanHandle: OpaquePointer?
    var fileError: Int32 = 0
    let message: UnsafeMutablePointer<CChar>? = try withCStrings(paths) { pointers in
        cdicom_scan_files(pointers, pointers.count, &scanHandle, &fileError)
    }
    if let message {
        defer { cdicom_free_string(message) }
        let text = String(cString: message)
        throw fileError != 0 ? LiversegError.invalidArgument(text) : LiversegError.io(text)
    }
    guard let scanHandle else { throw LiversegError.internalError("GDCM's scan returned no result") }
    defer { cdicom_scan_free(scanHandle) }
    var scan = DICOMScan()
    for (index, path) in paths.enumerated() where cdicom_scan_is_dicom(scanHandle, index) != 0 {
        scan.dicomFiles += 1
        func text(_ attribute: cdicom_attribute) -> String? {
            guard let value = cdicom_scan_value(scanHandle, index, attribute) else { return nil }
            let text = trimmed(String(cString: value))
            return text.isEmpty ? nil : text
        }
        func numbers(_ attribute: cdicom_attribute, _ name: String, count: Int) throws -> [Double]? {
            guard let value = text(attribute) else { return nil }
            let parts = value.split(separator: "\\", omittingEmptySubsequences: false).map { Double(trimmed(String($0))) }
            guard parts.count == count, parts.allSatisfy({ $0?.isFinite == true }) else {
                throw MalformedValue.message("\(path): \(name) '\(value)' is not \(count) number\(count == 1 ? "" : "s")")
            }
            return parts.compactMap { $0 }
        }
        func number(_ attribute: cdicom_attribute, _ name: String) throws -> Double? {
            try numbers(attribute, name, count: 1)?.first
        }
        func integer(_ attribute: cdicom_attribute, _ name: String) throws -> Int? {
            guard let value = try number(attribute, name) else { return nil }
            guard value == value.rounded(), abs(value) < 1e9 else {
                throw MalformedValue.message("\(path): \(name) \(value) is not a whole number")
            }
            return Int(value)
        }
        let (seriesUID, modality) = (text(CDICOM_SERIES_INSTANCE_UID) ?? "", text(CDICOM_MODALITY) ?? "")
        let description = text(CDICOM_SERIES_DESCRIPTION) ?? ""
        let isImage = [CDICOM_IMAGE_POSITION_PATIENT, CDICOM_IMAGE_ORIENTATION_PATIENT, CDICOM_ROWS, CDICOM_COLUMNS]
            .allSatisfy { text($0) != nil }
        do {
            let frames = try integer(CDICOM_NUMBER_OF_FRAMES, "NumberOfFrames") ?? 1
            guard isImage, let position = try numbers(CDICOM_IMAGE_POSITION_PATIENT, "ImagePositionPatient", count: 3),
                let orientation = try numbers(CDICOM_IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient", count: 6),
                let rows = try integer(CDICOM_ROWS, "Rows"), let columns = try integer(CDICOM_COLUMNS, "Columns")
            else {
                if frames > 1 || enhancedSOPClasses.contains(text(CDICOM_SOP_CLASS_UID) ?? "") { scan.multiFrameFiles += 1 }
                continue
            }
            scan.slices.append(
                DICOMSlice(
                    path: path, seriesUID: seriesUID, modality: modality, seriesDescription: description,
                    position: position, orientation: orientation, rows: rows, columns: columns,
                    pixelSpacing: try numbers(CDICOM_PIXEL_SPACING, "PixelSpacing", count: 2),
                    slope: try number(CDICOM_RESCALE_SLOPE, "RescaleSlope") ?? 1,
                    intercept: try number(CDICOM_RESCALE_INTERCEPT, "RescaleIntercept") ?? 0, frames: frames,
                    samplesPerPixel: try integer(CDICOM_SAMPLES_PER_PIXEL, "SamplesPerPixel") ?? 1,
                    bitsAllocated: try integer(CDICOM_BITS_ALLOCATED, "BitsAllocated") ?? 0,
                    spacingBetweenSlices: try number(CDICOM_SPACING_BETWEEN_SLICES, "SpacingBetweenSlices"),
                    sliceThickness: try number(CDICOM_SLICE_THICKNESS, "SliceThickness")))
        } catch MalformedValue.message(let problem) {
            guard isImage else { continue }
            var slice = DICOMSlice(
                path: path, seriesUID: seriesUID, modality: modality, seriesDescription: description, position: [0, 0, 0],
                rows: 0, columns: 0)
            slice.problem = problem
            scan.slices.append(slice)
        }
    }
    return scan
}

/// Calls `body` with a C array of C strings holding `strings`.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) throws -> R) throws -> R {
    var owned: [UnsafeMutablePointer<CChar>] = []
    defer { owned.forEach { free($0) } }
    for string in strings {
        guard let copy = strdup(string) else { throw LiversegError.outOfMemory("file names for GDCM") }
        owned.append(copy)
    }
    return try body(owned.map { UnsafePointer($0) })
}

/// Whether `path` is a DICOM Part 10 file: a regular file with "DICM" after the 128-byte
/// preamble. Only regular files are opened (a FIFO or a device could block).
package func isDICOMFile(_ path: String) -> Bool {
    guard isRegularFile(path) else { return false }
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 132)
    var count = 0
    while count < bytes.count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        count += n
    }
    return count == 132 && bytes[128..<132].elementsEqual("DICM".utf8)
}

/// The regular files under `folder` (searched recursively; `folder` itself and symbolic
/// links to files followed, links to folders not; hidden files and folders skipped), sorted
/// by path.
package func regularFiles(under folder: String) throws -> [String] {
    let base = folder.hasSuffix("/") ? folder : folder + "/"
    var files: [String] = []
    var pending = [""]  // folders still to list, relative to `base`, each ending in "/"
    while let relative = pending.popLast() {
        for name in try folderEntries(base + relative) where !name.hasPrefix(".") {
            let path = base + relative + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            // lstat: a link to a folder is not a folder here (never entered), a link to a file
            // counts as the file.
            if info.st_mode & S_IFMT == S_IFDIR {
                pending.append(relative + name + "/")
            } else if isRegularFile(path) {
                files.append(path)
            }
        }
    }
    return files.sorted()
}
