"""SLiver07 evaluation measures through libliverseg (liverseg_evaluate).

    m = liverseg.evaluate(seg, ref, spacing=(0.57, 0.57, 1.6))
    m["voe"], m["avg_d"], m["scores"]["total"]
"""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib, check

_FIELDS = ["dice", "voe", "vd", "avg_d", "rms_d", "max_d", "hd95", "mean_distance_a_to_b", "mean_distance_b_to_a"]
_COUNTS = ["voxels_a", "voxels_b", "border_voxels_a", "border_voxels_b"]
_SCORES = ["voe", "vd", "avg_d", "rms_d", "max_d", "total"]


class Metrics(ctypes.Structure):
    """ctypes mirror of liverseg_metrics."""
    _fields_ = ([("struct_size", ctypes.c_size_t)] + [(n, ctypes.c_double) for n in _FIELDS]
                + [(n, ctypes.c_size_t) for n in _COUNTS] + [("score_" + n, ctypes.c_double) for n in _SCORES])


@_lib.on_load
def _declare(lib):
    lib.liverseg_evaluate.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                      ctypes.POINTER(ctypes.c_double), ctypes.c_int, ctypes.c_int, ctypes.POINTER(Metrics)]
    lib.liverseg_evaluate.restype = ctypes.c_int


def evaluate(seg, ref, spacing, connectivity=18, threads=0):
    """Compares a segmentation A with a reference B (3-D arrays of one shape, non-zero =
    object) with voxel size `spacing` in mm along the arrays' axes. Returns a dict: dice,
    voe (%), vd (signed %, positive when A is larger), avg_d, rms_d, max_d, hd95 (mm;
    hd95 = 95th percentile of both directions' distances pooled, as MedPy's hd95),
    mean_distance_a_to_b / mean_distance_b_to_a (MedPy's asd in each direction), voxel and
    border-voxel counts, and "scores": the SLiver07 scores voe, vd, avg_d, rms_d, max_d and
    their mean, total. Border voxels: object voxels with a background neighbour among
    `connectivity` (6, 18 — the SLiver07 program — or 26) neighbours; beyond the array
    counts as background. Empty masks give the documented values (see liverseg.h), inf
    for distances to an empty surface, never NaN."""
    a = np.asarray(seg)
    b = np.asarray(ref)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"seg and ref must be 3-D arrays of one shape, got {a.shape} and {b.shape}")
    # Axis order does not change any measure, so pass both in memory order as x fastest.
    a = np.asfortranarray(a != 0, dtype=np.uint8)
    b = np.asfortranarray(b != 0, dtype=np.uint8)
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3:
        raise ValueError(f"spacing needs 3 values, got {spacing}")
    out = Metrics()
    out.struct_size = ctypes.sizeof(Metrics)
    dims = (ctypes.c_size_t * 3)(*a.shape)
    check(lib.liverseg_evaluate(a.ctypes.data, b.ctypes.data, dims, (ctypes.c_double * 3)(*spacing),
                                int(connectivity), int(threads), ctypes.byref(out)))
    result = {n: getattr(out, n) for n in _FIELDS + _COUNTS}
    result["scores"] = {n: getattr(out, "score_" + n) for n in _SCORES}
    return result
