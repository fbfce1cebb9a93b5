import LiversegSupport

/// How the network covers a grid with overlapping tiles. Tiles start at multiples of 4 and
/// overlap their neighbours by the architecture's receptive halo, so the core of every
/// tile equals the untiled output up to float rounding.
public struct TilePlan: Equatable, Sendable {
    /// One tile: the input region the network runs on, and the core it contributes.
    public struct Tile: Equatable, Sendable {
        /// Lower corner of the input region, (x, y, z).
        public let regionOrigin: [Int]
        /// Extent of the input region (multiples of 4).
        public let regionSize: GridSize
        /// Lower corner of the core.
        public let coreOrigin: [Int]
        /// Extent of the core.
        public let coreSize: GridSize
    }

    /// The tiles, x fastest.
    public let tiles: [Tile]

    /// Plans tiles over `grid` (extents multiples of 4) so that no region exceeds
    /// `maxVoxels`, halving the largest core extent until the regions fit.
    public init(grid: GridSize, halo: GridSize, maxVoxels: Int) throws {
        let g = [grid.x, grid.y, grid.z], h = [halo.x, halo.y, halo.z]
        var core = g
        func regionVoxels(_ core: [Int]) -> Int { (0..<3).map { min(g[$0], core[$0] + 2 * h[$0]) }.reduce(1, *) }
        while regionVoxels(core) > maxVoxels {
            guard let axis = (0..<3).filter({ core[$0] > 4 }).max(by: { core[$0] < core[$1] }) else {
                throw LiversegError.invalidArgument(
                    "max_tile_voxels \(maxVoxels) is too small: this model needs at least \(regionVoxels([4, 4, 4])) voxels per tile"
                )
            }
            core[axis] = (core[axis] / 2 + 3) / 4 * 4
        }
        var tiles: [Tile] = []
        for z in stride(from: 0, to: g[2], by: core[2]) {
            for y in stride(from: 0, to: g[1], by: core[1]) {
                for x in stride(from: 0, to: g[0], by: core[0]) {
                    let origin = [x, y, z]
                    let coreEnd = (0..<3).map { min(g[$0], origin[$0] + core[$0]) }
                    let lo = (0..<3).map { max(0, origin[$0] - h[$0]) }
                    let hi = (0..<3).map { min(g[$0], coreEnd[$0] + h[$0]) }
                    tiles.append(
                        Tile(
                            regionOrigin: lo, regionSize: GridSize(x: hi[0] - lo[0], y: hi[1] - lo[1], z: hi[2] - lo[2]),
                            coreOrigin: origin,
                            coreSize: GridSize(x: coreEnd[0] - x, y: coreEnd[1] - y, z: coreEnd[2] - z)))
                }
            }
        }
        self.tiles = tiles
    }
}
