"""Statistics of a mask on its CT's grid through libliverseg (liverseg_measure_mask): the
document `liverseg segment --statistics` writes per case.

    ct, geometry = liverseg.read_image("ct.nii.gz")
    stats = liverseg.liver_statistics(ct, mask, geometry)
    stats["volume_ml"], stats["hu_median"], stats["bounding_box"]["extent_mm"]
"""
from __future__ import annotations

import ctypes
from typing import Union

import numpy as np

from . import _lib
from ._lib import check, lib
from .imageio import Geometry


class MaskStatistics(ctypes.Structure):
    """ctypes mirror of liverseg_mask_statistics."""
    _fields_ = [("struct_size", ctypes.c_size_t), ("voxels", ctypes.c_size_t), ("volume_ml", ctypes.c_double),
                ("components", ctypes.c_size_t), ("hu_mean", ctypes.c_double), ("hu_sd", ctypes.c_double),
                ("hu_median", ctypes.c_double), ("min_voxel", ctypes.c_int64 * 3), ("max_voxel", ctypes.c_int64 * 3),
                ("extent_mm", ctypes.c_double * 3), ("ras_min_mm", ctypes.c_double * 3), ("ras_max_mm", ctypes.c_double * 3)]


@_lib.on_load
def _declare(lib):
    lib.liverseg_measure_mask.argtypes = [ctypes.POINTER(_lib.Volume), ctypes.c_void_p, ctypes.POINTER(MaskStatistics)]
    lib.liverseg_measure_mask.restype = ctypes.c_int


def liver_statistics(ct: np.ndarray, mask: np.ndarray, geometry: Union[Geometry, np.ndarray]) -> dict:
    """Statistics of `mask` (non-zero = liver) on the grid of `ct` (HU, [x, y, z]) with
    `geometry` (a Geometry or the 4x4 voxel->RAS affine): voxels, volume_ml, components
    (6-connected), hu_mean, hu_sd (population), hu_median, and bounding_box with
    min_voxel / max_voxel (indices), extent_mm (along i, j, k) and ras_min_mm / ras_max_mm
    (the RAS box of the voxel centres). An empty mask gives None for the HU values and the
    box, as the command's JSON gives null."""
    from . import _as_volume_array, _spacing_and_matrix, _volume_struct
    affine = geometry.affine if isinstance(geometry, Geometry) else geometry
    volume = _as_volume_array(ct)
    liver = np.asarray(mask)
    if liver.shape != volume.shape:
        raise ValueError(f"ct {volume.shape} and mask {liver.shape} must be 3-D arrays of one shape")
    liver = np.asfortranarray(liver != 0, dtype=np.uint8)
    spacing, matrix = _spacing_and_matrix(volume.shape, None, affine)
    out = MaskStatistics()
    out.struct_size = ctypes.sizeof(MaskStatistics)
    check(lib.liverseg_measure_mask(ctypes.byref(_volume_struct(volume, spacing, matrix)), liver.ctypes.data,
                                    ctypes.byref(out)))
    stats = {"voxels": out.voxels, "volume_ml": out.volume_ml, "components": out.components}
    if out.voxels == 0:
        return dict(stats, hu_mean=None, hu_sd=None, hu_median=None, bounding_box=None)
    stats.update(hu_mean=out.hu_mean, hu_sd=out.hu_sd, hu_median=out.hu_median,
                 bounding_box={name: list(getattr(out, name))
                               for name in ("min_voxel", "max_voxel", "extent_mm", "ras_min_mm", "ras_max_mm")})
    return stats
