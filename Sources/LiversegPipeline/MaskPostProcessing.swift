import LiversegSupport

/// Clean-up steps applied to a binary liver mask after thresholding or the CRF. The liver is
/// one solid organ: whatever the network labels apart from its largest piece (spleen, heart,
/// a blob of bowel) is wrong, and dark tumours or vessels enclosed by liver belong to it.
public struct MaskPostProcessing: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    /// Creates a set from its bits (the C API's LIVERSEG_POSTPROCESS_* values).
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Keep only the largest 6-connected component of liver voxels.
    public static let largestComponent = MaskPostProcessing(rawValue: 1)
    /// Fill background regions that do not reach the volume's border (6-connected, in 3D).
    public static let fillHoles3D = MaskPostProcessing(rawValue: 2)
    /// Fill holes of each axial slice (4-connected background not reaching the slice's
    /// border): vessels and tumours at the hilum are open in 3D but enclosed in a slice.
    public static let fillHolesInSlices = MaskPostProcessing(rawValue: 4)

    /// Every step, in the order they run; the default of `segment`.
    public static let all: MaskPostProcessing = [.largestComponent, .fillHoles3D, .fillHolesInSlices]

    /// The steps' names on command lines and in Python (snake case, as the C enum's).
    public static let stepNames: [(name: String, step: MaskPostProcessing)] =
        [("largest_component", .largestComponent), ("fill_holes_3d", .fillHoles3D), ("fill_holes_slices", .fillHolesInSlices)]

    /// Parses "all", "none" or a comma-separated list of step names.
    public init(parsing text: String) throws {
        switch text {
        case "all": self = .all
        case "none": self = []
        default:
            var steps: MaskPostProcessing = []
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let step = Self.stepNames.first(where: { $0.name == part })?.step else {
                    throw LiversegError.invalidArgument(
                        "post-processing \(text): use all, none or a comma-separated list of \(Self.stepNames.map(\.name).joined(separator: ", "))"
                    )
                }
                steps.insert(step)
            }
            self = steps
        }
    }
}

/// Applies `steps` to a 0/1 mask of `size` (x fastest) in place: largest component first,
/// then the 3D holes, then the holes of each slice across `sliceAxis` (0, 1 or 2: the axis
/// that runs head to foot). A voxel counts as liver when it is non-zero. `checkpoint`
/// runs after each step and each slice, and may throw (a cancellation) to stop.
func postProcess(
    mask: UnsafeMutableBufferPointer<UInt8>, size: GridSize, sliceAxis: Int,
    steps: MaskPostProcessing, checkpoint: () throws -> Void = {}
) throws {
    guard mask.count == size.voxelCount else {
        throw LiversegError.invalidArgument("mask has \(mask.count) voxels, size \(size) needs \(size.voxelCount)")
    }
    guard (0..<3).contains(sliceAxis) else { throw LiversegError.invalidArgument("slice axis \(sliceAxis) must be 0, 1 or 2") }
    guard MaskPostProcessing.all.isSuperset(of: steps) else {
        throw LiversegError.invalidArgument("unknown post-processing bits \(steps.subtracting(.all).rawValue)")
    }
    if steps.contains(.largestComponent) {
        keepLargestComponent(mask, size: size)
        try checkpoint()
    }
    if steps.contains(.fillHoles3D) {
        fillHoles(mask, size: size)
        try checkpoint()
    }
    if steps.contains(.fillHolesInSlices) {
        // Each slice is copied into a 2D grid (x fastest within the slice) and filled there.
        let extents = [size.x, size.y, size.z], strides = [1, size.x, size.x * size.y]
        let (u, v) = [(1, 2), (0, 2), (0, 1)][sliceAxis]
        let plane = GridSize(x: extents[u], y: extents[v], z: 1)
        var slice = [UInt8](repeating: 0, count: plane.voxelCount)
        for s in 0..<extents[sliceAxis] {
            let origin = s * strides[sliceAxis]
            for j in 0..<plane.y {
                for i in 0..<plane.x { slice[j * plane.x + i] = mask[origin + i * strides[u] + j * strides[v]] }
            }
            slice.withUnsafeMutableBufferPointer { fillHoles($0, size: plane) }
            for j in 0..<plane.y {
                for i in 0..<plane.x { mask[origin + i * strides[u] + j * strides[v]] = slice[j * plane.x + i] }
            }
            try checkpoint()
        }
    }
}

/// The number of 6-connected components of non-zero voxels in a mask of `size` (x fastest).
func componentCount(mask: UnsafeBufferPointer<UInt8>, size: GridSize) -> Int {
    let runs = RowRuns(mask, size: size, foreground: true)
    var components = runs.components(size: size)
    return (0..<runs.count).reduce(0) { $0 + (components.root($1) == $1 ? 1 : 0) }
}

/// The runs of a mask's liver voxels, their components, and the root of the largest
/// 6-connected one (ties: the component met first in memory order; nil without liver).
private func largestComponent(
    _ mask: UnsafeBufferPointer<UInt8>, size: GridSize
) -> (
    runs: RowRuns, components: DisjointSets, largest: Int?
) {
    let runs = RowRuns(mask, size: size, foreground: true)
    var components = runs.components(size: size)
    var voxels = [Int](repeating: 0, count: runs.count)
    for r in 0..<runs.count { voxels[components.root(r)] += runs.length(r) }
    let largest = voxels.indices.max { voxels[$0] < voxels[$1] || (voxels[$0] == voxels[$1] && $0 > $1) }
    return (runs, components, largest)
}

/// Zeroes every liver voxel outside the largest 6-connected component.
private func keepLargestComponent(_ mask: UnsafeMutableBufferPointer<UInt8>, size: GridSize) {
    var (runs, components, largest) = largestComponent(UnsafeBufferPointer(mask), size: size)
    guard let largest else { return }
    for r in 0..<runs.count where components.root(r) != largest { runs.fill(r, in: mask, with: 0, size: size) }
}

/// The bounding box of the largest 6-connected component of a mask's liver voxels (the one
/// `.largestComponent` keeps); nil when the mask holds no liver.
func largestComponentBox(_ mask: UnsafeBufferPointer<UInt8>, size: GridSize) -> VoxelBox? {
    var (runs, components, largest) = largestComponent(mask, size: size)
    guard let largest else { return nil }
    var box = VoxelBox(lower: [Int.max, Int.max, Int.max], upper: [Int.min, Int.min, Int.min])
    for r in 0..<runs.count where components.root(r) == largest {
        let (y, z) = runs.row(r, size: size)
        for (a, low, high) in [(0, Int(runs.start[r]), Int(runs.end[r])), (1, y, y + 1), (2, z, z + 1)] {
            box.lower[a] = min(box.lower[a], low)
            box.upper[a] = max(box.upper[a], high)
        }
    }
    return box
}

/// Sets every background region that does not touch the grid's border to 1 (6-connected;
/// an axis of extent 1 has no border, so a one-slice grid is filled as a 2D image).
private func fillHoles(_ mask: UnsafeMutableBufferPointer<UInt8>, size: GridSize) {
    let runs = RowRuns(UnsafeBufferPointer(mask), size: size, foreground: false)
    var components = runs.components(size: size)
    var open = [Bool](repeating: false, count: runs.count)
    for r in 0..<runs.count {
        let (y, z) = runs.row(r, size: size)
        let atBorder =
            runs.start[r] == 0 || Int(runs.end[r]) == size.x
            || (size.y > 1 && (y == 0 || y == size.y - 1)) || (size.z > 1 && (z == 0 || z == size.z - 1))
        if atBorder { open[components.root(r)] = true }
    }
    for r in 0..<runs.count where !open[components.root(r)] { runs.fill(r, in: mask, with: 1, size: size) }
}

/// The runs of liver (or background) voxels along x, row by row (row = y + size.y · z): a
/// compact form for connected components, a few runs per row instead of a label per voxel.
private struct RowRuns {
    /// First x of each run, and one past its last.
    var start: [Int32] = [], end: [Int32] = []
    /// Runs of row r are rowStart[r] ..< rowStart[r + 1].
    var rowStart: [Int]

    init(_ mask: UnsafeBufferPointer<UInt8>, size: GridSize, foreground: Bool) {
        let rows = size.y * size.z
        rowStart = [Int](repeating: 0, count: rows + 1)
        for row in 0..<rows {
            let base = row * size.x
            var x = 0
            while x < size.x {
                guard (mask[base + x] != 0) == foreground else { x += 1; continue }
                let first = x
                while x < size.x, (mask[base + x] != 0) == foreground { x += 1 }
                start.append(Int32(first))
                end.append(Int32(x))
            }
            rowStart[row + 1] = start.count
        }
    }

    var count: Int { start.count }
    func length(_ r: Int) -> Int { Int(end[r] - start[r]) }

    /// The (y, z) of run r's row.
    func row(_ r: Int, size: GridSize) -> (y: Int, z: Int) {
        // The last row whose first run is at or before r.
        var low = 0, high = rowStart.count - 2
        while low < high {
            let mid = (low + high + 1) / 2
            if rowStart[mid] <= r { low = mid } else { high = mid - 1 }
        }
        return (low % size.y, low / size.y)
    }

    /// Sets run r's voxels to `value`.
    func fill(_ r: Int, in mask: UnsafeMutableBufferPointer<UInt8>, with value: UInt8, size: GridSize) {
        let base = row(r, size: size)
        let offset = (base.z * size.y + base.y) * size.x
        for x in Int(start[r])..<Int(end[r]) { mask[offset + x] = value }
    }

    /// Runs joined when they overlap in x in face-adjacent rows (y − 1 or z − 1).
    func components(size: GridSize) -> DisjointSets {
        var sets = DisjointSets(count: count)
        for z in 0..<size.z {
            for y in 0..<size.y {
                let row = z * size.y + y
                if y > 0 { join(row, row - 1, &sets) }
                if z > 0 { join(row, row - size.y, &sets) }
            }
        }
        return sets
    }

    /// Unions the overlapping runs of two rows (both sorted by x).
    private func join(_ a: Int, _ b: Int, _ sets: inout DisjointSets) {
        var i = rowStart[a], j = rowStart[b]
        while i < rowStart[a + 1], j < rowStart[b + 1] {
            if start[i] < end[j], start[j] < end[i] { sets.union(i, j) }
            if end[i] < end[j] { i += 1 } else { j += 1 }
        }
    }
}

/// Union–find with path halving; roots are the smallest index of their set, so results
/// do not depend on the order of unions.
private struct DisjointSets {
    private var parent: [Int]
    init(count: Int) { parent = Array(0..<count) }

    mutating func root(_ i: Int) -> Int {
        var i = i
        while parent[i] != i {
            parent[i] = parent[parent[i]]
            i = parent[i]
        }
        return i
    }

    mutating func union(_ a: Int, _ b: Int) {
        let (ra, rb) = (root(a), root(b))
        if ra < rb { parent[rb] = ra } else if rb < ra { parent[ra] = rb }
    }
}
