"""Liver statistics of a mask on its CT's grid, the same document `liverseg segment
--statistics` writes per case (Sources/LiversegCLI/Statistics.swift).

    ct, geometry = liverseg.read_image("ct.nii.gz")
    stats = liverseg.liver_statistics(ct, mask, geometry)
    stats["volume_ml"], stats["hu_median"], stats["bounding_box"]["extent_mm"]

The library does not export this computation (it lives in the command), so it is written
here in numpy; Tests/python/test_batch.py holds the two to the same values on a real CT.
Needs scipy for the component count.
"""
from __future__ import annotations

from typing import Union

import numpy as np

from .imageio import Geometry


def liver_statistics(ct: np.ndarray, mask: np.ndarray, geometry: Union[Geometry, np.ndarray]) -> dict:
    """Statistics of `mask` (non-zero = liver) on the grid of `ct` (HU, [x, y, z]) with
    `geometry` (a Geometry or the 4x4 voxel->RAS affine): voxels, volume_ml, components
    (6-connected), hu_mean, hu_sd (population), hu_median, and bounding_box with
    min_voxel / max_voxel (indices), extent_mm (along i, j, k) and ras_min_mm / ras_max_mm
    (the RAS box of the voxel centres). An empty mask gives None for the HU values and the
    box, as the command's JSON gives null."""
    from scipy import ndimage
    affine = np.asarray(geometry.affine if isinstance(geometry, Geometry) else geometry, dtype=np.float64)
    ct = np.asarray(ct)
    liver = np.asarray(mask) != 0
    if ct.ndim != 3 or liver.shape != ct.shape:
        raise ValueError(f"ct {ct.shape} and mask {liver.shape} must be 3-D arrays of one shape")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxels = int(liver.sum())
    # scipy's default 3-D structuring element is the 6-neighbourhood, the command's connectivity.
    _, components = ndimage.label(liver)
    stats = {"voxels": voxels, "volume_ml": voxels * float(np.prod(spacing)) / 1000, "components": int(components)}
    if voxels == 0:
        return dict(stats, hu_mean=None, hu_sd=None, hu_median=None, bounding_box=None)
    values = ct[liver].astype(np.float64)
    indices = np.nonzero(liver)
    lower = np.array([int(i.min()) for i in indices])
    upper = np.array([int(i.max()) for i in indices])
    # The RAS box of the voxel centres: the index box's eight corners through the affine.
    corners = np.array([[(lower, upper)[(c >> axis) & 1][axis] for axis in range(3)] + [1] for c in range(8)], dtype=np.float64)
    ras = (affine @ corners.T)[:3]
    stats.update(hu_mean=float(values.mean()), hu_sd=float(values.std()), hu_median=float(np.median(values)),
                 bounding_box={"min_voxel": lower.tolist(), "max_voxel": upper.tolist(),
                               "extent_mm": ((upper - lower + 1) * spacing).tolist(),
                               "ras_min_mm": ras.min(axis=1).tolist(), "ras_max_mm": ras.max(axis=1).tolist()})
    return stats
