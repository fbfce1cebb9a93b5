import ArgumentParser
import LiversegSupport
import LiversegImageIO
import LiversegPipeline

struct Ensemble: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine model files into one ensemble model file, whose networks `segment` averages.",
        discussion: """
            Every network of the given models (each may have its own grid spacing and \
            architecture) goes into OUT, in order; `segment` maps each network's fused liver \
            probability back onto the CT's grid and thresholds — or refines with the CRF — their \
            mean. The CRF section and other model-wide settings are the first model's. The \
            bundled model is built this way (docs/training.md).
            """)

    @Argument(help: "The ensemble model file to write (format version 2).")
    var out: String

    @Argument(help: "Two or more model files (liverseg train's output, or ensembles).")
    var models: [String]

    func run() throws {
        try reportingErrors {
            let loaded = try models.map { try Model(contentsOfFile: $0) }
            let provenance = JSONValue.object([
                ("command", .string("liverseg ensemble")), ("models", .array(models.map { .string($0) })),
            ])
            let ensemble = try Model(ensembleOf: loaded, extraMetadata: [("ensemble", provenance)])
            try writeFileAtomically(ensemble.fileBytes(), to: out)
        }
    }
}
