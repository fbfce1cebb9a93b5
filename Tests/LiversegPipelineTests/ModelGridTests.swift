import XCTest
@testable import LiversegPipeline
@testable import LiversegSupport
@testable import LiversegVolume

final class ModelGridTests: XCTestCase {
    func testModelGridIsBoundedBeforeConvertingToInt() throws {
        let preprocessing = Preprocessing(
            spacing: [2.5, 2.5, 2.5], orientation: AxisCodes("RAS")!,
            huWindow: (-200, 300), mean: 0, std: 1)
        let voxel: Float = 0
        func grid(_ size: GridSize, _ spacing: [Double]) throws -> ModelGrid {
            try withUnsafePointer(to: voxel) { pointer in
                try ModelGrid(
                    volume: VolumeInput(voxels: .float32(pointer), size: size, spacing: spacing, ijkToRAS: nil),
                    preprocessing: preprocessing)
            }
        }
        XCTAssertEqual(try grid(GridSize(x: 1, y: 1, z: 1), [10240, 1, 1]).size, GridSize(x: 4096, y: 1, z: 1))
        for spacing in [[3e38, 1, 1], [1, 1.7e308, 1], [10243, 1, 1]] {
            XCTAssertThrowsError(try grid(GridSize(x: 1, y: 1, z: 1), spacing)) { error in
                XCTAssertTrue("\(error)".contains("more than the 4096"), "\(error)")
            }
        }
        XCTAssertThrowsError(try grid(GridSize(x: 1, y: 1, z: 1), [5000, 5000, 5000])) { error in  // 2000³
            XCTAssertTrue("\(error)".contains("more than the 1073741824"), "\(error)")
        }
    }

    func testTilePlanCoversTheGridOnceWithHaloedRegions() throws {
        let grid = GridSize(x: 96, y: 64, z: 40), halo = GridSize(x: 8, y: 8, z: 4)
        let plan = try TilePlan(grid: grid, halo: halo, maxVoxels: 40_000)
        XCTAssertGreaterThan(plan.tiles.count, 1)
        var covered = [Int](repeating: 0, count: grid.voxelCount)
        for tile in plan.tiles {
            XCTAssertLessThanOrEqual(tile.regionSize.voxelCount, 40_000)
            for (o, e) in zip(tile.regionOrigin, [tile.regionSize.x, tile.regionSize.y, tile.regionSize.z]) {
                XCTAssertEqual(o % 4, 0); XCTAssertEqual(e % 4, 0)
            }
            for a in 0..<3 {
                let coreLo = tile.coreOrigin[a], regionLo = tile.regionOrigin[a]
                let coreHi = coreLo + [tile.coreSize.x, tile.coreSize.y, tile.coreSize.z][a]
                let regionHi = regionLo + [tile.regionSize.x, tile.regionSize.y, tile.regionSize.z][a]
                let h = [halo.x, halo.y, halo.z][a], g = [grid.x, grid.y, grid.z][a]
                XCTAssertEqual(regionLo, max(0, coreLo - h))
                XCTAssertEqual(regionHi, min(g, coreHi + h))
            }
            for z in 0..<tile.coreSize.z {
                for y in 0..<tile.coreSize.y {
                    for x in 0..<tile.coreSize.x {
                        covered[((tile.coreOrigin[2] + z) * grid.y + tile.coreOrigin[1] + y) * grid.x + tile.coreOrigin[0] + x] +=
                            1
                    }
                }
            }
        }
        XCTAssertTrue(covered.allSatisfy { $0 == 1 })
        XCTAssertThrowsError(try TilePlan(grid: grid, halo: halo, maxVoxels: 100))
    }

}
