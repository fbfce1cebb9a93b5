import LiversegSupport
import LiversegImageIO

/// A learning-curve chart like the paper's Fig. 2(a): loss against epoch for one or more
/// training runs, each a coloured polyline on a shared scale, with grid lines and the axis
/// ranges written in a small built-in digit font (no font files needed).
public struct LearningCurves {
    /// One run: its colour and (epoch, loss) points.
    public struct Series {
        /// Line colour.
        public var colour: (UInt8, UInt8, UInt8)
        /// Points in epoch order.
        public var points: [(epoch: Double, loss: Double)]
        /// Creates a series.
        public init(colour: (UInt8, UInt8, UInt8), points: [(epoch: Double, loss: Double)]) {
            self.colour = colour
            self.points = points
        }
    }

    /// Colours used for the first, second, … series: red (3D-DSN), blue (3D-CNN), then others.
    public static let palette: [(UInt8, UInt8, UInt8)] = [(220, 40, 40), (40, 90, 220), (30, 160, 60), (200, 140, 0)]

    /// Chart size in pixels.
    public var width = 640, height = 400

    /// Creates a chart with the default size.
    public init() {}

    /// Draws the series. Losses are plotted from 0 to the largest finite loss.
    public func render(_ series: [Series]) throws -> RGBImage {
        let points = series.flatMap(\.points).filter { $0.loss.isFinite && $0.epoch.isFinite }
        guard !points.isEmpty else { throw LiversegError.invalidArgument("no finite points to plot") }
        let maxEpoch = max(points.map(\.epoch).max() ?? 1, 1), maxLoss = max(points.map(\.loss).max() ?? 1, 1e-12)
        var image = RGBImage(width: width, height: height)
        for i in 0..<image.pixels.count { image.pixels[i] = 255 }
        let (left, right, top, bottom) = (56, width - 16, 16, height - 32)
        func px(_ epoch: Double) -> Int { left + Int((epoch / maxEpoch * Double(right - left)).rounded()) }
        func py(_ loss: Double) -> Int { bottom - Int((loss / maxLoss * Double(bottom - top)).rounded()) }
        for k in 0...4 {  // grid lines at quarters
            let y = bottom - (bottom - top) * k / 4, x = left + (right - left) * k / 4
            line(&image, (left, y), (right, y), (225, 225, 225))
            line(&image, (x, top), (x, bottom), (225, 225, 225))
        }
        line(&image, (left, bottom), (right, bottom), (0, 0, 0))
        line(&image, (left, top), (left, bottom), (0, 0, 0))
        text(&image, format(maxLoss), at: (4, top - 3))
        text(&image, "0", at: (left - 12, bottom - 3))
        text(&image, "0", at: (left - 2, bottom + 8))
        text(&image, format(maxEpoch), at: (right - 24, bottom + 8))
        for s in series {
            let finite = s.points.filter { $0.loss.isFinite && $0.epoch.isFinite }
            for (a, b) in zip(finite, finite.dropFirst()) {
                line(&image, (px(a.epoch), py(a.loss)), (px(b.epoch), py(b.loss)), s.colour, thick: true)
            }
        }
        return image
    }

    private func format(_ v: Double) -> String {
        v >= 100 || v == v.rounded()
            ? String(Int(v.rounded()))
            : String(Int((v * 1000).rounded()) / 1000) + "." + String(String(Int((v * 1000).rounded()) % 1000 + 1000).dropFirst())
    }

    /// Bresenham's line, optionally two pixels thick.
    private func line(_ image: inout RGBImage, _ a: (Int, Int), _ b: (Int, Int), _ c: (UInt8, UInt8, UInt8), thick: Bool = false)
    {
        var (x, y) = a
        let dx = abs(b.0 - x), dy = -abs(b.1 - y), sx = x < b.0 ? 1 : -1, sy = y < b.1 ? 1 : -1
        var err = dx + dy
        while true {
            plot(&image, x, y, c)
            if thick { plot(&image, x, y + 1, c); plot(&image, x + 1, y, c) }
            if x == b.0 && y == b.1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    private func plot(_ image: inout RGBImage, _ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        if x >= 0, x < image.width, y >= 0, y < image.height { image.set(x, y, c) }
    }

    /// 3×5 glyphs for digits and '.', one row per 3 bits.
    private static let glyphs: [Character: [UInt8]] = [
        "0": [7, 5, 5, 5, 7], "1": [2, 6, 2, 2, 7], "2": [7, 1, 7, 4, 7], "3": [7, 1, 7, 1, 7], "4": [5, 5, 7, 1, 1],
        "5": [7, 4, 7, 1, 7], "6": [7, 4, 7, 5, 7], "7": [7, 1, 1, 1, 1], "8": [7, 5, 7, 5, 7], "9": [7, 5, 7, 1, 7],
        ".": [0, 0, 0, 0, 2],
    ]

    /// Writes digits at twice the glyph size.
    private func text(_ image: inout RGBImage, _ s: String, at origin: (Int, Int)) {
        for (i, ch) in s.enumerated() {
            guard let rows = Self.glyphs[ch] else { continue }
            for (r, bits) in rows.enumerated() {
                for col in 0..<3 where bits & (4 >> col) != 0 {
                    for d in 0..<4 { plot(&image, origin.0 + i * 8 + 2 * col + d % 2, origin.1 + 2 * r + d / 2, (0, 0, 0)) }
                }
            }
        }
    }
}

/// A PNG of each CSV log's `column` against its epoch column, one colour per log in
/// `LearningCurves.palette` order; `name` appears in errors.
public func learningCurvesPNG(_ logs: [(name: String, text: String)], column: String) throws -> [UInt8] {
    var series: [LearningCurves.Series] = []
    for (i, log) in logs.enumerated() {
        var lines = log.text.split(whereSeparator: \.isNewline).map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        guard let header = lines.first, let e = header.firstIndex(of: "epoch"),
            let c = header.firstIndex(where: { $0 == Substring(column) })
        else {
            throw LiversegError.invalidArgument("\(log.name) has no epoch and \(column) columns")
        }
        lines.removeFirst()
        let points = lines.compactMap { row -> (epoch: Double, loss: Double)? in
            guard row.count > max(e, c), let x = Double(row[e]), let y = Double(row[c]) else { return nil }
            return (x, y)
        }
        series.append(.init(colour: LearningCurves.palette[i % LearningCurves.palette.count], points: points))
    }
    return try LearningCurves().render(series).pngData()
}
