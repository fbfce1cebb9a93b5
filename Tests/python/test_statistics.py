"""liverseg_measure_mask (liverseg.liver_statistics) against a float64 numpy/scipy reference
written here, on real CT with real and raw multi-component masks, and at the C boundary."""
import ctypes

import numpy as np
import pytest
from scipy import ndimage

import liverseg
from liverseg import _lib
from liverseg.statistics import MaskStatistics


def reference_statistics(ct, mask, affine):
    """The documented figures, independently: numpy for HU and boxes, scipy for components."""
    affine = np.asarray(affine, dtype=np.float64)
    liver = np.asarray(mask) != 0
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxels = int(liver.sum())
    _, components = ndimage.label(liver)  # 3-D default structure: the 6-neighbourhood
    stats = {"voxels": voxels, "volume_ml": voxels * float(np.prod(spacing)) / 1000, "components": int(components)}
    if voxels == 0:
        return dict(stats, hu_mean=None, hu_sd=None, hu_median=None, bounding_box=None)
    values = np.asarray(ct)[liver].astype(np.float64)
    lower = np.array([int(i.min()) for i in np.nonzero(liver)])
    upper = np.array([int(i.max()) for i in np.nonzero(liver)])
    corners = np.array([[(lower, upper)[(c >> a) & 1][a] for a in range(3)] + [1] for c in range(8)], dtype=np.float64)
    ras = (affine @ corners.T)[:3]
    return dict(stats, hu_mean=values.mean(), hu_sd=values.std(), hu_median=float(np.median(values)),
                bounding_box={"min_voxel": lower.tolist(), "max_voxel": upper.tolist(),
                              "extent_mm": ((upper - lower + 1) * spacing).tolist(),
                              "ras_min_mm": ras.min(axis=1).tolist(), "ras_max_mm": ras.max(axis=1).tolist()})


def assert_same(stats, expected):
    for name in ("voxels", "components"):
        assert stats[name] == expected[name], name
    for name in ("volume_ml", "hu_mean", "hu_sd", "hu_median"):
        assert stats[name] == pytest.approx(expected[name], rel=1e-10), name
    for name, value in expected["bounding_box"].items():
        assert stats["bounding_box"][name] == pytest.approx(value, rel=1e-12, abs=1e-9), name


def test_real_liver_mask_and_a_fragmented_one(ircadb01):
    ct, affine, liver = ircadb01
    assert_same(liverseg.liver_statistics(ct, liver, affine), reference_statistics(ct, liver, affine))
    # A raw threshold of the CT: thousands of components, holes, voxels at the border.
    raw = (ct > 100) & (ct < 200)
    expected = reference_statistics(ct, raw, affine)
    assert expected["components"] > 100
    assert_same(liverseg.liver_statistics(ct, raw, affine), expected)
    # float32 HU (as read_image gives scaled CT) and an odd voxel count for the median.
    one_more = liver.copy()
    one_more[np.argwhere(liver == 0)[0][0], 0, 0] = 1
    assert liver.sum() % 2 != one_more.sum() % 2
    assert_same(liverseg.liver_statistics(ct.astype(np.float32) + 0.25, one_more, affine),
                reference_statistics(ct.astype(np.float32) + 0.25, one_more, affine))


def test_empty_mask_gives_no_hu_figures_and_no_box():
    ct = np.zeros((4, 5, 6), np.int16)
    stats = liverseg.liver_statistics(ct, np.zeros_like(ct), np.diag([1.5, 1, 2, 1]))
    assert stats == {"voxels": 0, "volume_ml": 0.0, "components": 0, "hu_mean": None, "hu_sd": None,
                     "hu_median": None, "bounding_box": None}


def test_boundary_rejects_bad_arguments_with_a_message():
    lib = _lib.lib
    ct = np.asfortranarray(np.zeros((4, 4, 4), np.int16))
    mask = np.asfortranarray(np.ones((4, 4, 4), np.uint8))
    volume = liverseg._volume_struct(ct, [1.0, 1.0, 1.0], None)
    out = MaskStatistics()
    out.struct_size = ctypes.sizeof(MaskStatistics)

    def status(v, m, o):
        code = lib.liverseg_measure_mask(v, m, o)
        return code, lib.liverseg_last_error().decode()

    code, message = status(None, mask.ctypes.data, ctypes.byref(out))
    assert code != 0 and "volume" in message
    code, message = status(ctypes.byref(volume), None, ctypes.byref(out))
    assert code != 0 and "mask" in message
    code, message = status(ctypes.byref(volume), mask.ctypes.data, None)
    assert code != 0 and "out" in message
    out.struct_size = 8
    code, message = status(ctypes.byref(volume), mask.ctypes.data, ctypes.byref(out))
    assert code != 0 and "struct_size" in message
    out.struct_size = ctypes.sizeof(MaskStatistics)
    volume.spacing[1] = float("nan")
    code, message = status(ctypes.byref(volume), mask.ctypes.data, ctypes.byref(out))
    assert code != 0 and "spacing" in message
    volume.spacing[1] = 1.0
    assert status(ctypes.byref(volume), mask.ctypes.data, ctypes.byref(out))[0] == 0
    assert (out.voxels, out.components, tuple(out.max_voxel)) == (64, 1, (3, 3, 3))
