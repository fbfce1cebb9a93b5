import LiversegImageIO

extension Image {
    /// Lends the image to `body` as segmentation input: int16, int32 and float32 voxels
    /// directly, anything else (or scaled values) converted to float32 intensities.
    public func withVolumeInput<R>(_ body: (VolumeInput) throws -> R) throws -> R {
        if isUnscaled {
            return try data.withUnsafeBytes { raw in
                try VolumeInput.lending(
                    raw.baseAddress!, type: voxelType, size: size, spacing: spacing,
                    ijkToRAS: ijkToRAS, body)
            }
        }
        return try floatIntensities().withUnsafeBytes { raw in
            try VolumeInput.lending(
                raw.baseAddress!, type: .float32, size: size, spacing: spacing,
                ijkToRAS: ijkToRAS, body)
        }
    }
}
