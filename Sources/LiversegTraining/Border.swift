import LiversegSupport

/// Which neighbours decide whether an object voxel lies on the object's border.
public enum BorderConnectivity: Int, CaseIterable, Sendable {
    /// The 6 face neighbours.
    case faces = 6
    /// Face and edge neighbours: 18, ITK's radius-1 ball, as the official SLiver07
    /// evaluation program erodes.
    case edges = 18
    /// All 26 neighbours (the SLiver07 web page's wording).
    case vertices = 26

    /// Neighbour offsets (dx, dy, dz).
    var offsets: [(Int, Int, Int)] {
        var result: [(Int, Int, Int)] = []
        for dz in -1...1 {
            for dy in -1...1 {
                for dx in -1...1 {
                    let order = abs(dx) + abs(dy) + abs(dz)
                    if order == 0 { continue }
                    if order == 2 && self == .faces { continue }
                    if order == 3 && self != .vertices { continue }
                    result.append((dx, dy, dz))
                }
            }
        }
        return result
    }
}

/// Marks the border voxels of a binary object: object voxels with at least one neighbour
/// (under `connectivity`) outside the object. Neighbours beyond the grid count as outside,
/// as scipy's binary_erosion (MedPy) treats them, so object voxels on the grid's faces are
/// border voxels.
///
/// - Parameters:
///   - object: one flag per voxel, x fastest.
///   - size: grid extents.
package func borderVoxels(
    of object: UnsafeBufferPointer<Bool>, size: GridSize, connectivity: BorderConnectivity,
    threads: Int = 0
) -> [Bool] {
    var border = [Bool](repeating: false, count: object.count)
    let offsets = connectivity.offsets
    let (nx, ny, nz) = (size.x, size.y, size.z)
    border.withUnsafeMutableBufferPointer { out in
        nonisolated(unsafe) let o = out.baseAddress
        parallelFor(nz, threads: resolvedThreadCount(threads)) { k in
            for j in 0..<ny {
                for i in 0..<nx where object[(k * ny + j) * nx + i] {
                    let outside = offsets.contains { dx, dy, dz in
                        let (x, y, z) = (i + dx, j + dy, k + dz)
                        guard x >= 0, x < nx, y >= 0, y < ny, z >= 0, z < nz else { return true }
                        return !object[(z * ny + y) * nx + x]
                    }
                    if outside { o?[(k * ny + j) * nx + i] = true }
                }
            }
        }
    }
    return border
}
