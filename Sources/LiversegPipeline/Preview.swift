import LiversegSupport
import LiversegImageIO
import LiversegVolume

/// A picture for checking a segmentation by eye: axial, coronal and sagittal slices through
/// the centre of the mask, side by side, each fitted into a `panelSize`² square with the
/// voxel spacing respected, CT in a liver window, the mask's outline in red and the
/// reference's in green. Radiological convention: the patient's right on the left, anterior
/// at the top of the axial slice, superior at the top of the others.
public struct Preview {
    /// Side of each of the three square panels, in pixels; the picture is 3·panelSize ×
    /// panelSize.
    public var panelSize = 256
    /// Intensities mapped to black and white (HU): the usual abdominal liver window.
    public var window: (lower: Double, upper: Double) = (-160, 240)
    /// Outline colour of the segmentation.
    public var maskColour: (UInt8, UInt8, UInt8) = (255, 48, 48)
    /// Outline colour of the reference.
    public var referenceColour: (UInt8, UInt8, UInt8) = (48, 255, 96)

    /// The default look.
    public init() {}

    /// Renders `ct` with the outlines of `mask` and `reference` (one byte per voxel of `ct`'s
    /// grid, non-zero = object; either may be nil). Slices pass through the centroid of the
    /// mask, else of the reference, else the volume's centre.
    public func render(_ ct: Image, mask: [UInt8]?, reference: [UInt8]? = nil) throws -> RGBImage {
        let n = ct.size.voxelCount
        for (name, m) in [("mask", mask), ("reference", reference)] where m != nil && m?.count != n {
            throw LiversegError.invalidArgument("preview: the \(name) has \(m?.count ?? 0) voxels, the image \(n)")
        }
        guard panelSize >= 8, panelSize <= 4096 else {
            throw LiversegError.invalidArgument("preview: panel size \(panelSize) must be in 8...4096")
        }
        let mapping = AxisMapping(
            from: try AxisMapping.axisCodes(ofIJKToRAS: ct.ijkToRAS), to: AxisCodes(rasAxis: [0, 1, 2], sign: [1, 1, 1]))
        let dims = [ct.size.x, ct.size.y, ct.size.z], spacing = ct.spacing
        // Extents and spacing along R, A, S.
        let extent = mapping.sourceAxis.map { dims[$0] }, step = mapping.sourceAxis.map { spacing[$0] }
        /// Flat source index of canonical voxel (r, a, s), each counted toward R, A, S.
        func index(_ c: [Int]) -> Int {
            var source = [0, 0, 0]
            for j in 0..<3 { source[mapping.sourceAxis[j]] = mapping.flipped[j] ? extent[j] - 1 - c[j] : c[j] }
            return (source[2] * dims[1] + source[1]) * dims[0] + source[0]
        }
        let centre =
            centroid(of: mask, reference, dims: dims).map { point in
                (0..<3).map { j -> Int in
                    let c = point[mapping.sourceAxis[j]]
                    return mapping.flipped[j] ? extent[j] - 1 - c : c
                }
            } ?? extent.map { $0 / 2 }

        var picture = RGBImage(width: 3 * panelSize, height: panelSize)
        // Each panel: (horizontal axis, vertical axis, fixed axis); both in-plane axes are
        // drawn from their R/A/S end toward L/P/I.
        let panels = [(0, 1, 2), (0, 2, 1), (1, 2, 0)]
        for (p, (h, v, fixed)) in panels.enumerated() {
            let width = Double(extent[h]) * step[h], height = Double(extent[v]) * step[v]
            let scale = Double(panelSize) / max(width, height)
            let (offsetX, offsetY) = ((Double(panelSize) - width * scale) / 2, (Double(panelSize) - height * scale) / 2)
            var labels = [UInt8](repeating: 0, count: panelSize * panelSize)
            for y in 0..<panelSize {
                for x in 0..<panelSize {
                    let u = ((Double(x) + 0.5 - offsetX) / scale / step[h]).rounded(.down)
                    let w = ((Double(y) + 0.5 - offsetY) / scale / step[v]).rounded(.down)
                    guard u >= 0, u < Double(extent[h]), w >= 0, w < Double(extent[v]) else { continue }
                    var c = [0, 0, 0]
                    c[h] = extent[h] - 1 - Int(u)
                    c[v] = extent[v] - 1 - Int(w)
                    c[fixed] = centre[fixed]
                    let i = index(c)
                    let grey = UInt8(
                        max(0, min(255, (ct.intensity(at: i) - window.lower) / (window.upper - window.lower) * 255)).rounded())
                    picture.set(p * panelSize + x, y, (grey, grey, grey))
                    labels[y * panelSize + x] =
                        (mask.map { $0[i] != 0 ? 1 : 0 } ?? 0) | (reference.map { $0[i] != 0 ? 2 : 0 } ?? 0)
                }
            }
            for (bit, colour) in [(UInt8(2), referenceColour), (UInt8(1), maskColour)] {
                for y in 0..<panelSize {
                    for x in 0..<panelSize where labels[y * panelSize + x] & bit != 0 {
                        let edge = [(-1, 0), (1, 0), (0, -1), (0, 1)].contains { dx, dy in
                            let (nx, ny) = (x + dx, y + dy)
                            return nx < 0 || ny < 0 || nx >= panelSize || ny >= panelSize
                                || labels[ny * panelSize + nx] & bit == 0
                        }
                        if edge { picture.set(p * panelSize + x, y, colour) }
                    }
                }
            }
        }
        return picture
    }

    /// The voxel nearest the centroid of the first non-empty mask, in source voxel indices.
    private func centroid(of masks: [UInt8]?..., dims: [Int]) -> [Int]? {
        for case let mask? in masks {
            var sum = [0.0, 0.0, 0.0], count = 0.0
            for (i, v) in mask.enumerated() where v != 0 {
                sum[0] += Double(i % dims[0]); sum[1] += Double(i / dims[0] % dims[1]); sum[2] += Double(i / (dims[0] * dims[1]))
                count += 1
            }
            if count > 0 { return sum.map { Int(($0 / count).rounded()) } }
        }
        return nil
    }
}
