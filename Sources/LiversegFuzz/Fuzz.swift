import LiversegSupport
import LiversegImageIO
import LiversegPipeline

// Fuzz harnesses for libFuzzer, one per input surface, chosen by LIVERSEG_FUZZ_TARGET:
//   nifti      a .nii or .nii.gz file
//   nrrd       a .nrrd file, or (first byte odd) a .nhdr header plus its detached data
//   metaimage  a .mha file, or (first byte odd) a .mhd header plus its detached data
//   model      a model file (safetensors + "liverseg" JSON metadata + architecture)
//   crf        liverseg_refine_crf with fuzzed dims, spacing, matrix, voxels, probability, params
//   evaluate   liverseg_evaluate with fuzzed dims, spacing, connectivity, masks, struct_size
// Built by tools/fuzz.sh with -sanitize=fuzzer,address and -DLIVERSEG_FUZZ (libFuzzer's driver).
// Without LIVERSEG_FUZZ it is a plain program that runs the inputs named on its command line
// through the same harness (regression tests replay crashes found by fuzzing).
// Errors thrown or returned are the expected outcome of bad input; only a trap, a sanitizer
// report or a leak is a finding.
import CLiverseg
#if canImport(Glibc)
import Glibc
#endif

/// The harness selected by LIVERSEG_FUZZ_TARGET (read once).
private let target: String = {
    guard let name = getenv("LIVERSEG_FUZZ_TARGET") else {
        fputs("set LIVERSEG_FUZZ_TARGET to nifti, nrrd, metaimage, model, crf or evaluate\n", stderr)
        exit(2)
    }
    return String(cString: name)
}()

/// Reads fuzz bytes front to back; past the end it yields zeros.
struct FuzzReader {
    let bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    mutating func byte() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }
    mutating func load<T: FixedWidthInteger>(_: T.Type) -> T {
        (0..<MemoryLayout<T>.size).reduce(T.zero) { value, i in value | T(truncatingIfNeeded: byte()) << (8 * i) }
    }
    mutating func double() -> Double { Double(bitPattern: load(UInt64.self)) }
    mutating func float() -> Float { Float(bitPattern: load(UInt32.self)) }
    /// A number that is usually ordinary and sometimes anything a double can hold.
    mutating func parameter(typical: Double) -> Double {
        let kind = byte()
        switch kind % 4 {
        case 0: return double()
        case 1: return typical * Double(kind) / 64
        default: return typical
        }
    }
    var rest: [UInt8] { offset < bytes.count ? Array(bytes[offset...]) : [] }

    /// Volume dims, each below `limit`, and the voxel count the harness allocates buffers
    /// for. Sometimes one dim is made huge and another at least 2, so that their product
    /// overflows Int: the library must refuse that before reading (count 0). Dims whose
    /// product fits must match the buffers, as a C caller's must.
    mutating func dims(below limit: UInt8) -> (dims: [Int], count: Int) {
        var dims = (0..<3).map { _ in Int(byte() % limit) }
        let flags = byte()
        guard flags & 1 != 0 else { return (dims, dims.reduce(1, *)) }
        let huge = Int(flags >> 1) % 3
        dims[huge] = Int.max / 2 + 1 + Int(byte())
        dims[(huge + 1) % 3] = max(2, dims[(huge + 1) % 3])
        return (dims, 0)
    }
}

/// Splits a detached-format input: byte 0 odd means detached, then a 16-bit header length.
private func image(_ bytes: [UInt8], attached: ImageFormat, detached: ImageFormat) {
    var reader = FuzzReader(bytes)
    let isDetached = reader.byte() & 1 == 1
    let file: [UInt8], data: [UInt8]
    if isDetached {
        let length = Int(reader.load(UInt16.self))
        let rest = reader.rest
        file = Array(rest.prefix(length))
        data = Array(rest.dropFirst(length))
    } else {
        (file, data) = (reader.rest, [])
    }
    _ = try? decodeImage(file, format: isDetached ? detached : attached) { _ in data }
}

/// liverseg_refine_crf on a small volume: every argument fuzzed, buffers always as large
/// as the dims say (a dim beyond them is made to overflow, which must be refused first).
private func crf(_ bytes: [UInt8]) {
    var r = FuzzReader(bytes)
    let (dims, count) = r.dims(below: 12)
    let dtype = [
        LIVERSEG_DTYPE_INT16, LIVERSEG_DTYPE_INT32, LIVERSEG_DTYPE_FLOAT32, LIVERSEG_DTYPE_UINT8,
        LIVERSEG_DTYPE_FLOAT64, liverseg_dtype(UInt32(r.byte())),
    ][Int(r.byte()) % 6]
    var voxels = [UInt8](repeating: 0, count: max(1, count * 8))
    for i in 0..<voxels.count { voxels[i] = r.byte() }
    var probability = [Float](repeating: 0, count: max(1, count))
    for i in 0..<count { probability[i] = r.byte() & 0x80 != 0 ? r.float() : Float(r.byte()) / 255 }
    var matrix = [Double](repeating: 0, count: 16)
    let spacing = (0..<3).map { _ in r.parameter(typical: 1.5) }
    for i in 0..<16 { matrix[i] = r.byte() & 3 == 0 ? r.double() : (i % 5 == 0 ? (i == 15 ? 1 : spacing[i / 5]) : 0) }
    var p = liverseg_crf_params()
    _ = liverseg_crf_params_init(&p, MemoryLayout<liverseg_crf_params>.size)
    let knobs = r.byte()
    if knobs & 1 != 0 { p.struct_size = Int(r.load(UInt16.self)) }
    p.mode = liverseg_crf_mode(UInt32(r.byte() % 3))
    p.n_iterations = Int32(truncatingIfNeeded: Int16(bitPattern: r.load(UInt16.self)) % 12)
    p.mu1 = r.parameter(typical: 10)
    p.mu2 = r.parameter(typical: 3)
    p.theta_alpha_mm = r.parameter(typical: 12)
    p.theta_beta_hu = r.parameter(typical: 15)
    p.theta_gamma_mm = r.parameter(typical: 1)
    p.normalisation = liverseg_crf_normalisation(UInt32(r.byte() % 3))
    p.uncertain_only = Int32(r.byte() % 2)
    p.uncertain_probability = r.parameter(typical: 0.01)
    p.uncertain_margin_mm = r.parameter(typical: 10)
    p.n_threads = Int32(Int8(bitPattern: r.byte()) % 4)
    var mask = [UInt8](repeating: 0, count: max(1, count))
    voxels.withUnsafeBytes { v in
        matrix.withUnsafeBufferPointer { m in
            var volume = liverseg_volume()
            volume.data = v.baseAddress
            volume.dtype = dtype
            volume.dims = (dims[0], dims[1], dims[2])
            volume.spacing = (spacing[0], spacing[1], spacing[2])
            volume.ijk_to_ras = knobs & 2 != 0 ? m.baseAddress : nil
            _ = withUnsafePointer(to: &p) { params in
                liverseg_refine_crf(&volume, probability, knobs & 4 != 0 ? nil : params, &mask)
            }
        }
    }
}

/// liverseg_evaluate on small masks with fuzzed dims, spacing, connectivity and struct_size.
private func evaluate(_ bytes: [UInt8]) {
    var r = FuzzReader(bytes)
    let (dims, count) = r.dims(below: 16)
    let spacing = (0..<3).map { _ in r.parameter(typical: 0.8) }
    let connectivity = Int32(Int8(bitPattern: r.byte()))
    let threads = Int32(Int8(bitPattern: r.byte()) % 4)
    var metrics = liverseg_metrics()
    metrics.struct_size = r.byte() & 0x80 != 0 ? Int(r.load(UInt16.self)) : MemoryLayout<liverseg_metrics>.size
    var a = [UInt8](repeating: 0, count: max(1, count)), b = a
    // Bits of the remaining bytes make the two masks.
    for i in 0..<count {
        let bits = r.byte()
        (a[i], b[i]) = (bits & 1, bits >> 1 & 1)
    }
    _ = liverseg_evaluate(a, b, dims, spacing, connectivity, threads, &metrics)
}

/// Runs one input through the selected harness.
func runOne(_ bytes: [UInt8]) {
    switch target {
    case "nifti": _ = try? decodeImage(bytes, format: .niftiGzip) { _ in [] }
    case "nrrd": image(bytes, attached: .nrrd, detached: .nrrdDetached)
    case "metaimage": image(bytes, attached: .metaImage, detached: .metaImageDetached)
    case "model": _ = try? Model(bytes: bytes)
    case "crf": crf(bytes)
    case "evaluate": evaluate(bytes)
    default:
        fputs("unknown LIVERSEG_FUZZ_TARGET \(target)\n", stderr)
        exit(2)
    }
}

/// libFuzzer's entry for one input.
private let fuzzOne: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32 = { data, size in
    runOne(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

#if LIVERSEG_FUZZ
/// libFuzzer's driver (SwiftPM names the program's entry itself, so libFuzzer's own main
/// is not used).
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32
#endif

@main
enum FuzzMain {
    static func main() {
        #if LIVERSEG_FUZZ
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
        #else
        // Replays input files through the harness: `LIVERSEG_FUZZ_TARGET=nifti LiversegFuzz FILE...`.
        for path in CommandLine.arguments.dropFirst() {
            guard let bytes = try? readWholeFile(path) else {
                fputs("cannot read \(path)\n", stderr)
                exit(1)
            }
            runOne(bytes)
        }
        print("replayed \(CommandLine.arguments.count - 1) input(s)")
        #endif
    }
}
