import LiversegDICOM
import LiversegImageIO
import LiversegSupport

/// A CT as the command reads it: an image file (chosen by extension), or a DICOM series
/// given as a folder (searched recursively) or as one of its files. For DICOM, `series`
/// picks a SeriesInstanceUID; without it, a folder's largest axial CT series is read and a
/// note on stderr names it and the others. `progress(fraction)` follows the reading.
struct CTInput {
    let image: Image
    /// The DICOM series read, when the input was DICOM.
    let dicom: DICOMSeriesPlan?

    init(_ path: String, series: String? = nil, threads: Int = 0, progress: (Double) -> Void = { _ in }) throws {
        guard isDICOMInput(path) else {
            if let series {
                throw LiversegError.invalidArgument("--series \(series) names a DICOM series, but \(path) is an image file")
            }
            progress(0)
            image = try readImage(path)
            dicom = nil
            return
        }
        let plan = try planDICOMSeries(path, series: series)
        if let note = plan.note { printError("note: \(note)") }
        image = try plan.read(threads: threads, progress: progress)
        dicom = plan
    }
}

/// The cases of a batch folder, sorted by name: its image files (known extensions) and its
/// subfolders (each a DICOM series). Hidden entries and `excluded` (the output folder, when
/// it lies inside) are skipped. DICOM files lying in the folder itself are refused: they
/// are one series, which `liverseg segment FOLDER MASK` reads.
func batchInputs(in folder: String, excluding excluded: String? = nil) throws -> [String] {
    let names = try folderEntries(folder)
    let skip = excluded.map(standardizedPath)
    var inputs: [String] = []
    for name in names.sorted() where !name.hasPrefix(".") {
        let path = folder + "/" + name
        guard pathExists(path) else { continue }
        if isFolder(path) {
            if standardizedPath(path) != skip { inputs.append(path) }
        } else if (try? ImageFormat(path: name)) != nil {
            inputs.append(path)
        } else if isDICOMFile(path) {
            throw LiversegError.invalidArgument(
                "\(folder) holds DICOM files itself (\(name)); --input-dir takes a folder of cases (image files, "
                    + "or one subfolder per DICOM series): segment this series with `liverseg segment \(folder) MASK`")
        }
    }
    return inputs
}

/// The file name a batch gives the output of `input`: an image file's own name (its
/// format), a DICOM folder's or file's name + .nii.gz.
func batchOutputName(for input: String) -> String {
    let name = lastPathComponent(input)
    return isDICOMInput(input) ? name + ".nii.gz" : name
}
