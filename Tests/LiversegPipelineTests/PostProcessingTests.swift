import XCTest
@testable import LiversegPipeline
@testable import LiversegSupport

/// Mask post-processing against a voxel-by-voxel flood-fill oracle written independently of
/// the run-based implementation.
final class PostProcessingTests: XCTestCase {
    /// Labels of the 6-connected (4 in a one-slice grid) components of voxels equal to `value`.
    func floodLabels(_ mask: [UInt8], _ s: GridSize, value: UInt8) -> [Int] {
        var label = [Int](repeating: -1, count: mask.count), next = 0
        for seed in mask.indices where mask[seed] == value && label[seed] < 0 {
            var stack = [seed]
            label[seed] = next
            while let i = stack.popLast() {
                let (x, y, z) = (i % s.x, (i / s.x) % s.y, i / (s.x * s.y))
                for (dx, dy, dz) in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)] {
                    let (u, v, w) = (x + dx, y + dy, z + dz)
                    guard u >= 0, u < s.x, v >= 0, v < s.y, w >= 0, w < s.z else { continue }
                    let j = (w * s.y + v) * s.x + u
                    if mask[j] == value, label[j] < 0 { label[j] = next; stack.append(j) }
                }
            }
            next += 1
        }
        return label
    }

    func oracleLargest(_ mask: [UInt8], _ s: GridSize) -> [UInt8] {
        let label = floodLabels(mask, s, value: 1)
        var count: [Int: Int] = [:]
        for l in label where l >= 0 { count[l, default: 0] += 1 }
        guard let best = count.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) })?.key else {
            return mask
        }
        return label.map { $0 == best ? 1 : 0 }
    }

    func oracleFill(_ mask: [UInt8], _ s: GridSize) -> [UInt8] {
        let label = floodLabels(mask, s, value: 0)
        var open = Set<Int>()
        for i in mask.indices where label[i] >= 0 {
            let (x, y, z) = (i % s.x, (i / s.x) % s.y, i / (s.x * s.y))
            if x == 0 || x == s.x - 1 || (s.y > 1 && (y == 0 || y == s.y - 1)) || (s.z > 1 && (z == 0 || z == s.z - 1)) {
                open.insert(label[i])
            }
        }
        return mask.indices.map { label[$0] >= 0 && !open.contains(label[$0]) ? 1 : mask[$0] }
    }

    func run(_ mask: [UInt8], _ s: GridSize, axis: Int = 2, _ steps: MaskPostProcessing) throws -> [UInt8] {
        var m = mask
        try m.withUnsafeMutableBufferPointer { try postProcess(mask: $0, size: s, sliceAxis: axis, steps: steps) }
        return m
    }

    /// Two boxes touching only along an edge (not a face) are two components; the larger
    /// survives; a closed cavity in it is filled; a tunnel to the border is not.
    func testKnownComponentsAndHoles() throws {
        let s = GridSize(x: 12, y: 10, z: 8)
        var mask = [UInt8](repeating: 0, count: s.voxelCount)
        func set(_ xs: Range<Int>, _ ys: Range<Int>, _ zs: Range<Int>, _ v: UInt8) {
            for z in zs { for y in ys { for x in xs { mask[(z * s.y + y) * s.x + x] = v } } }
        }
        set(1..<6, 1..<6, 1..<6, 1)  // 125 voxels
        set(6..<9, 6..<9, 1..<4, 1)  // 27 voxels, meets the first box only along an edge
        set(2..<4, 2..<4, 2..<4, 0)  // closed cavity of 8 voxels
        let largest = try run(mask, s, .largestComponent)
        XCTAssertEqual(largest.reduce(0) { $0 + Int($1) }, 125 - 8)
        let filled = try run(mask, s, [.largestComponent, .fillHoles3D])
        XCTAssertEqual(filled.reduce(0) { $0 + Int($1) }, 125)
        // Open the cavity to the outside through a tunnel along z: 3D filling keeps it,
        // slice filling closes the slices where the tunnel is enclosed.
        set(2..<3, 2..<3, 0..<2, 0)
        let tunnel = try run(mask, s, [.largestComponent, .fillHoles3D])
        XCTAssertEqual(tunnel.reduce(0) { $0 + Int($1) }, 125 - 8 - 1)
        let slices = try run(mask, s, axis: 2, .all)
        XCTAssertEqual(slices.reduce(0) { $0 + Int($1) }, 125)
        // Slicing across x instead: the slice x = 2 holds the tunnel, which keeps its 4 cavity
        // voxels and the tunnel voxel inside the box open; the slice x = 3 is enclosed.
        let sideways = try run(mask, s, axis: 0, .all)
        XCTAssertEqual(sideways.reduce(0) { $0 + Int($1) }, 125 - 5)
        XCTAssertEqual(box(mask, s), VoxelBox(lower: [1, 1, 1], upper: [6, 6, 6]))
        XCTAssertNil(box([UInt8](repeating: 0, count: s.voxelCount), s))
    }

    func box(_ mask: [UInt8], _ s: GridSize) -> VoxelBox? {
        mask.withUnsafeBufferPointer { largestComponentBox($0, size: s) }
    }

    /// The bounding box of the oracle's largest component.
    func oracleBox(_ mask: [UInt8], _ s: GridSize) -> VoxelBox? {
        let kept = oracleLargest(mask, s)
        guard kept.contains(1) else { return nil }
        var box = VoxelBox(lower: [Int.max, Int.max, Int.max], upper: [0, 0, 0])
        for i in kept.indices where kept[i] == 1 {
            let at = [i % s.x, (i / s.x) % s.y, i / (s.x * s.y)]
            for a in 0..<3 { box.lower[a] = min(box.lower[a], at[a]); box.upper[a] = max(box.upper[a], at[a] + 1) }
        }
        return box
    }

    func testRandomMasksMatchTheFloodFillOracle() throws {
        var rng = SeededGenerator(seed: 11)
        for trial in 0..<40 {
            let s = GridSize(x: 3 + Int(rng.next() % 14), y: 1 + Int(rng.next() % 12), z: 1 + Int(rng.next() % 9))
            let density = 0.3 + 0.5 * rng.uniform()
            let mask = (0..<s.voxelCount).map { _ in UInt8(rng.uniform() < density ? 1 : 0) }
            XCTAssertEqual(try run(mask, s, .largestComponent), oracleLargest(mask, s), "trial \(trial) \(s)")
            XCTAssertEqual(box(mask, s), oracleBox(mask, s), "trial \(trial) \(s)")
            XCTAssertEqual(try run(mask, s, .fillHoles3D), oracleFill(mask, s), "trial \(trial) \(s)")
            // Slices across z: the oracle fills each z-slice as a one-slice grid.
            var expected = mask
            let plane = GridSize(x: s.x, y: s.y, z: 1)
            for z in 0..<s.z {
                let range = z * plane.voxelCount..<(z + 1) * plane.voxelCount
                expected.replaceSubrange(range, with: oracleFill(Array(mask[range]), plane))
            }
            XCTAssertEqual(try run(mask, s, axis: 2, .fillHolesInSlices), expected, "trial \(trial) \(s)")
        }
    }

    func testBadArgumentsAreErrors() throws {
        var mask = [UInt8](repeating: 1, count: 8)
        try mask.withUnsafeMutableBufferPointer { m in
            XCTAssertThrowsError(try postProcess(mask: m, size: GridSize(x: 3, y: 2, z: 2), sliceAxis: 2, steps: .all))
            XCTAssertThrowsError(try postProcess(mask: m, size: GridSize(x: 2, y: 2, z: 2), sliceAxis: 3, steps: .all))
            XCTAssertThrowsError(
                try postProcess(
                    mask: m, size: GridSize(x: 2, y: 2, z: 2), sliceAxis: 2,
                    steps: MaskPostProcessing(rawValue: 8)))
        }
    }
}
