import CDICOM
import LiversegImageIO
import LiversegSupport

/// Whether the command should read `path` as DICOM: a folder, or a file without an image
/// file extension (.nii, .nrrd, …): a DICOM file stands for its series.
public func isDICOMInput(_ path: String) -> Bool {
    if isFolder(path) { return true }
    return (try? ImageFormat(path: path)) == nil
}

/// Finds the series to read at `path`: a folder (searched recursively; hidden files
/// skipped) or one DICOM file (its series, among the files of its folder). In a folder with
/// several series `series` names one by SeriesInstanceUID; without it the axial CT series
/// with the most slices is chosen and the plan's note says so. Throws a clear error for a
/// folder without DICOM image slices, a series that is not axial, and slices that do not
/// form one evenly spaced stack.
public func planDICOMSeries(_ path: String, series: String? = nil) throws -> DICOMSeriesPlan {
    guard pathExists(path) else {
        throw LiversegError.io("\(path): no such file or folder")
    }
    if isFolder(path) {
        let files = try regularFiles(under: path)
        guard !files.isEmpty else { throw LiversegError.invalidArgument("\(path): empty folder, no DICOM files") }
        let scan = try scanDICOMFiles(files)
        if scan.dicomFiles == 0 {
            throw LiversegError.invalidArgument(
                "\(path): no DICOM files among its \(files.count) file\(files.count == 1 ? "" : "s")")
        }
        return try planSeries(scan, path: path, requested: series)
    }
    let own = try scanDICOMFiles([path])
    guard own.dicomFiles == 1 else {
        throw LiversegError.invalidArgument(
            "\(path): neither a DICOM file nor an image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd)")
    }
    guard let slice = own.slices.first else { return try planSeries(own, path: path, requested: series) }
    let folder = parentFolder(path)
    let siblings = try folderEntries(folder.isEmpty ? "." : folder)
        .filter { !$0.hasPrefix(".") }.sorted().map { folder.isEmpty ? $0 : folder + "/" + $0 }
        .filter(isRegularFile)
    return try planSeries(try scanDICOMFiles(siblings), path: path, requested: series, fileSeries: slice.seriesUID)
}

extension DICOMSeriesPlan {
    /// Decodes the slices (on up to `threads` threads; 0: all cores) into one image in
    /// intensities (HU for CT): each slice's RescaleSlope and RescaleIntercept applied, int16
    /// when every rescale is integral and the values fit, else int32; with non-integral
    /// rescales, the stored values with the common slope and intercept as the image's
    /// scaling, or float64 when the slices' rescales differ (as liverseg.read_dicom in
    /// Python). `progress(fraction)` is called on the calling thread as slices are decoded.
    public func read(threads: Int = 0, progress: (Double) -> Void = { _ in }) throws -> Image {
        let first = slices[0]
        let voxelsPerSlice = try checkedProduct([first.rows, first.columns], what: "DICOM slice size")
        let bytesPerVoxel = first.bitsAllocated / 8
        let sliceBytes = try checkedProduct([voxelsPerSlice, bytesPerVoxel], what: "DICOM slice size")
        let totalBytes = try checkedProduct([sliceBytes, slices.count], what: "DICOM series size")
        guard totalBytes <= maximumDataBytes else {
            throw LiversegError.unsupported("\(path): the series has \(totalBytes) bytes of pixel data, more than liverseg reads")
        }
        let size = GridSize(x: first.columns, y: first.rows, z: slices.count)
        let count = slices.count
        // GDCM decodes in a child process (CDICOM) into memory shared with it.
        guard let raw = cdicom_shared_alloc(totalBytes) else {
            throw LiversegError.outOfMemory("\(totalBytes) bytes for the pixel data of \(path)")
        }
        defer { cdicom_shared_free(raw, totalBytes) }
        var infos = [cdicom_pixels](repeating: cdicom_pixels(), count: count)
        var messages = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
        defer { messages.forEach { $0.map(cdicom_free_string) } }
        let paths = slices.map(\.path)
        final class Reporter {
            let report: (Double) -> Void
            init(_ report: @escaping (Double) -> Void) { self.report = report }
        }
        var fileError: Int32 = 0
        let failure: UnsafeMutablePointer<CChar>? = try withoutActuallyEscaping(progress) { progress in
            let reporter = Reporter(progress)
            return try withCStrings(paths) { pointers in
                withExtendedLifetime(reporter) {
                    cdicom_read_slices(
                        pointers, count, raw, sliceBytes, Int32(clamping: resolvedThreadCount(threads)), &infos, &messages,
                        { context, fraction in
                            guard let context else { return }
                            Unmanaged<Reporter>.fromOpaque(context).takeUnretainedValue().report(fraction)
                        }, Unmanaged.passUnretained(reporter).toOpaque(), &fileError)
                }
            }
        }
        if let failure {
            defer { cdicom_free_string(failure) }
            let text = "\(path): \(String(cString: failure))"
            throw fileError != 0 ? LiversegError.invalidArgument(text) : LiversegError.io(text)
        }
        // Stored-value rules per slice, checked against the header GDCM decoded.
        var bitsStored = [Int](repeating: 0, count: count), signed = [Bool](repeating: false, count: count)
        for k in 0..<count {
            if let message = messages[k] {
                throw LiversegError.invalidArgument("\(paths[k]): \(String(cString: message))")
            }
            let info = infos[k]
            guard Int(info.columns) == first.columns, Int(info.rows) == first.rows, info.frames == 1,
                info.samples_per_pixel == 1, Int(info.bits_allocated) == first.bitsAllocated, info.length == sliceBytes
            else {
                throw LiversegError.invalidArgument(
                    "\(paths[k]): GDCM decoded \(info.columns)×\(info.rows)×\(info.frames) pixels of "
                        + "\(info.samples_per_pixel) sample(s) and \(info.bits_allocated) bits where the header says "
                        + "\(first.columns)×\(first.rows)×1 of 1 sample and \(first.bitsAllocated) bits")
            }
            guard (1...Int(info.bits_allocated)).contains(Int(info.bits_stored)), info.pixel_representation <= 1 else {
                throw LiversegError.invalidArgument(
                    "\(paths[k]): BitsStored \(info.bits_stored), PixelRepresentation \(info.pixel_representation)")
            }
            bitsStored[k] = Int(info.bits_stored)
            signed[k] = info.pixel_representation == 1
        }
        return try assembleVolume(
            StoredSlices(
                base: UnsafeRawPointer(raw), bytesPerVoxel: bytesPerVoxel, voxelsPerSlice: voxelsPerSlice,
                bitsStored: bitsStored, signed: signed),
            rescale: slices.map { ($0.slope, $0.intercept) }, size: size, threads: threads)
    }

    /// `read`'s image with the geometry: the volume the command segments.
    private func assembleVolume(
        _ stored: StoredSlices, rescale: [(slope: Double, intercept: Double)], size: GridSize, threads: Int
    ) throws -> Image {
        let count = rescale.count
        let workers = resolvedThreadCount(threads)
        // The stored range of each slice, then the intensity range of the volume.
        var lows = [Int64](repeating: 0, count: count), highs = [Int64](repeating: 0, count: count)
        lows.withUnsafeMutableBufferPointer { lows in
            highs.withUnsafeMutableBufferPointer { highs in
                parallelFor(count, threads: workers) { k in
                    var lo = Int64.max, hi = Int64.min
                    stored.forEach(slice: k) { _, v in
                        lo = min(lo, v)
                        hi = max(hi, v)
                    }
                    lows[k] = lo
                    highs[k] = hi
                }
            }
        }
        let integral = rescale.allSatisfy { $0.slope == $0.slope.rounded() && $0.intercept == $0.intercept.rounded() }
        if integral && rescale.allSatisfy({ abs($0.slope) < 0x1p20 && abs($0.intercept) < 0x1p40 }) {
            var lo = Int64.max, hi = Int64.min
            for k in 0..<count {
                let (a, b) = (Int64(rescale[k].slope) * lows[k], Int64(rescale[k].slope) * highs[k])
                lo = min(lo, min(a, b) + Int64(rescale[k].intercept))
                hi = max(hi, max(a, b) + Int64(rescale[k].intercept))
            }
            let intensity = { (k: Int, v: Int64) in v * Int64(rescale[k].slope) + Int64(rescale[k].intercept) }
            if lo >= Int64(Int16.min) && hi <= Int64(Int16.max) {
                return try volume(Int16.self, stored, size: size, threads: workers) {
                    Int16(truncatingIfNeeded: intensity($0, $1))
                }
            }
            if lo >= Int64(Int32.min) && hi <= Int64(Int32.max) {
                return try volume(Int32.self, stored, size: size, threads: workers) {
                    Int32(truncatingIfNeeded: intensity($0, $1))
                }
            }
        } else if !integral, rescale.allSatisfy({ $0 == rescale[0] }) {
            let (lo, hi) = (lows.min() ?? 0, highs.max() ?? 0)
            let (slope, intercept) = rescale[0]
            if lo >= Int64(Int16.min) && hi <= Int64(Int16.max) {
                return try volume(Int16.self, stored, size: size, threads: workers, slope: slope, intercept: intercept) {
                    Int16(truncatingIfNeeded: $1)
                }
            }
            if lo >= Int64(Int32.min) && hi <= Int64(Int32.max) {
                return try volume(Int32.self, stored, size: size, threads: workers, slope: slope, intercept: intercept) {
                    Int32(truncatingIfNeeded: $1)
                }
            }
        }
        return try volume(Double.self, stored, size: size, threads: workers) {
            Double($1) * rescale[$0].slope + rescale[$0].intercept
        }
    }

    /// The image whose voxel (i, j, k) is `value(k, stored value of pixel (i, j) of slice k)`.
    private func volume<T: ImageScalar>(
        _: T.Type, _ stored: StoredSlices, size: GridSize, threads: Int, slope: Double = 1, intercept: Double = 0,
        value: (Int, Int64) -> T
    ) throws -> Image {
        let n = stored.voxelsPerSlice
        var data = [UInt8](repeating: 0, count: try checkedProduct([n, size.z, MemoryLayout<T>.stride], what: "volume"))
        let width = MemoryLayout<T>.stride
        data.withUnsafeMutableBytes { bytes in
            let out = bytes.baseAddress!
            parallelFor(size.z, threads: threads) { k in
                let slice = out + k * n * width
                stored.forEach(slice: k) { i, v in slice.storeBytes(of: value(k, v), toByteOffset: i * width, as: T.self) }
            }
        }
        return try Image(
            voxelType: T.voxelType, data: data, size: size, ijkToRAS: ijkToRAS, slope: slope, intercept: intercept)
    }
}

/// Decoded slices as GDCM wrote them (host byte order, BitsAllocated per voxel), read as
/// stored values: the low BitsStored bits, sign-extended when PixelRepresentation is 1
/// (higher bits, such as overlays, are dropped, as pydicom does).
private struct StoredSlices {
    let base: UnsafeRawPointer
    let bytesPerVoxel: Int
    let voxelsPerSlice: Int
    let bitsStored: [Int]
    let signed: [Bool]

    /// Calls `body(i, value)` for every pixel i of slice k.
    @inline(__always)
    func forEach(slice k: Int, _ body: (Int, Int64) -> Void) {
        let start = base + k * voxelsPerSlice * bytesPerVoxel
        let bits = bitsStored[k]
        let mask = (Int64(1) << bits) - 1, sign = signed[k] ? Int64(1) << (bits - 1) : Int64.max, wrap = Int64(1) << bits
        @inline(__always) func visit<P: FixedWidthInteger & UnsignedInteger>(_: P.Type) {
            let width = MemoryLayout<P>.size
            for i in 0..<voxelsPerSlice {
                let v = Int64(start.loadUnaligned(fromByteOffset: i * width, as: P.self)) & mask
                body(i, v >= sign ? v - wrap : v)
            }
        }
        switch bytesPerVoxel {
        case 1: visit(UInt8.self)
        case 2: visit(UInt16.self)
        default: visit(UInt32.self)
        }
    }
}
