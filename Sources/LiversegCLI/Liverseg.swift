import ArgumentParser
import CLiverseg
import LiversegSupport
import LiversegImageIO

@main
struct Liverseg: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "liverseg",
        abstract: "Segment the liver in abdominal CT with the 3D DSN network and evaluate segmentations.",
        discussion: """
            Image files: NIfTI-1 (.nii, .nii.gz), NRRD (.nrrd, .nhdr + data file) and MetaImage \
            (.mha, .mhd + .raw), any integer or float voxel type. A CT may also be a DICOM series: \
            a folder (its largest axial CT series, or --series UID) or one file of the series. \
            Outputs keep the input's grid and geometry and are written atomically.

            Exit status:
              0   success (a batch: every case)
              64  bad command line (unknown option, missing or malformed argument)
              65  bad input data: a malformed or inconsistent image or model file, grids that differ
              69  unsupported input (e.g. a 4D image, a NIfTI-2 file, an unknown NRRD encoding)
              70  internal error (a bug in liverseg; please report it)
              71  out of memory
              74  a file could not be read or written
              130 cancelled
            Errors are printed as one line on standard error.
            """,
        // The version is written once, in include/liverseg.h.
        version: String(cString: lvs_version_string()),
        subcommands: [Segment.self, Eval.self, Info.self, Train.self, LeaveOneOut.self, Curves.self, Ensemble.self])
}

/// Maps core errors to the documented exit codes.
func exitCode(for error: LiversegError) -> Int32 {
    switch error {
    case .invalidArgument, .invalidModel: return 65
    case .unsupported: return 69
    case .internalError: return 70
    case .outOfMemory: return 71
    case .io: return 74
    case .cancelled: return 130
    }
}

/// Runs a subcommand's work: a thrown core error becomes one line on stderr and its exit code.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as LiversegError {
        printError(error.description)
        throw ExitCode(exitCode(for: error))
    }
}

/// Writes "liverseg: message" as one line on stderr.
func printError(_ message: String) {
    let line = "liverseg: " + message.split(whereSeparator: \.isNewline).joined(separator: " ") + "\n"
    writeToStandardError(line)
}
