import XCTest
@testable import LiversegVolume
@testable import LiversegSupport

final class CroppingTests: XCTestCase {
    /// A cropped volume holds the box's voxels (checked voxel by voxel against their flat
    /// indices), keeps the voxel type, and its ijkToRAS puts its first voxel where the box's
    /// first voxel is; pasting the crop back restores the box and fills the rest.
    func testCropHoldsTheBoxInPlaceAndPasteInvertsIt() throws {
        let size = GridSize(x: 7, y: 5, z: 4)
        let box = VoxelBox(lower: [2, 1, 1], upper: [6, 4, 3])
        let values = (0..<size.voxelCount).map { Float($0) }
        let matrix: [Double] = [0, 0, -2, 10, -1, 0, 0, 5, 0, 3, 0, 1, 0, 0, 0, 1]
        try values.withUnsafeBufferPointer { v in
            let volume = VolumeInput(voxels: .float32(v.baseAddress!), size: size, spacing: [1, 3, 2], ijkToRAS: matrix)
            try volume.withCropped(to: box) { crop in
                XCTAssertEqual(crop.size, GridSize(x: 4, y: 3, z: 2))
                XCTAssertEqual(crop.spacing, [1, 3, 2])
                guard case .float32(let c) = crop.voxels else { return XCTFail("voxel type changed") }
                for k in 0..<2 {
                    for j in 0..<3 {
                        for i in 0..<4 {
                            let flat = ((1 + k) * 5 + 1 + j) * 7 + 2 + i
                            XCTAssertEqual(c[(k * 3 + j) * 4 + i], Float(flat))
                        }
                    }
                }
                // RAS of the box's first voxel through the whole volume's matrix.
                var first = [Double](repeating: 0, count: 3)
                for r in 0..<3 {
                    first[r] = matrix[r * 4 + 3]
                    for c in 0..<3 { first[r] += matrix[r * 4 + c] * Double(box.lower[c]) }
                }
                XCTAssertEqual([crop.ijkToRAS![3], crop.ijkToRAS![7], crop.ijkToRAS![11]], first)
                for e in 0..<16 where e % 4 != 3 { XCTAssertEqual(crop.ijkToRAS![e], matrix[e]) }
                var pasted = [Float](repeating: 0, count: size.voxelCount)
                box.paste(c, into: &pasted, size: size, outside: -1)
                for (flat, value) in pasted.enumerated() {
                    let at = [flat % 7, flat / 7 % 5, flat / 35]
                    let inside = (0..<3).allSatisfy { at[$0] >= box.lower[$0] && at[$0] < box.upper[$0] }
                    XCTAssertEqual(value, inside ? Float(flat) : -1)
                }
            }
            // The whole volume is lent without a copy.
            try volume.withCropped(to: VoxelBox(size)) { whole in
                guard case .float32(let w) = whole.voxels else { return XCTFail("voxel type changed") }
                XCTAssertEqual(w, v.baseAddress!)
            }
            for bad in [VoxelBox(lower: [0, 0, 0], upper: [8, 5, 4]), VoxelBox(lower: [3, 1, 1], upper: [3, 4, 3])] {
                XCTAssertThrowsError(try volume.withCropped(to: bad) { _ in }) { error in
                    XCTAssertTrue("\(error)".contains("not a box inside"), "\(error)")
                }
            }
        }
        let small: [Int16] = (0..<size.voxelCount).map { Int16($0) }
        try small.withUnsafeBufferPointer { v in
            let volume = VolumeInput(voxels: .int16(v.baseAddress!), size: size, spacing: [1, 1, 1], ijkToRAS: nil)
            try volume.withCropped(to: box) { crop in
                guard case .int16(let c) = crop.voxels else { return XCTFail("voxel type changed") }
                XCTAssertEqual(c[0], Int16((1 * 5 + 1) * 7 + 2))
                XCTAssertNil(crop.ijkToRAS)
            }
        }
    }
}
