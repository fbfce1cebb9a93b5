import LiversegSupport

/// A mask of `size` with the box [lo, hi) set (x fastest).
public func boxMask(_ size: GridSize, _ lo: [Int], _ hi: [Int]) -> [UInt8] {
    var m = [UInt8](repeating: 0, count: size.voxelCount)
    for k in lo[2]..<hi[2] { for j in lo[1]..<hi[1] { for i in lo[0]..<hi[0] { m[(k * size.y + j) * size.x + i] = 1 } } }
    return m
}
