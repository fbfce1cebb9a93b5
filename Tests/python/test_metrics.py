"""SLiver07 measures from liverseg.evaluate against independent implementations:
surface distances built here from scipy.ndimage (binary_erosion + distance_transform_edt
with sampling=spacing), and MedPy's dc / hd / hd95 / asd / ravd.

Conventions (liverseg's, and where MedPy differs):
- Border voxel: an object voxel with a background voxel among its 6/18/26 neighbours;
  beyond the array is background (scipy's binary_erosion border_value=0, as MedPy).
  MedPy's `connectivity` argument 1/2/3 is liverseg's 6/18/26.
- AvgD (SLiver07) is the mean of the distances of both directions pooled. MedPy's assd is
  the mean of the two directional means instead: they differ unless both borders have the
  same number of voxels. liverseg reports both directional means (= MedPy's asd), and
  AvgD = (n_a * asd(a, b) + n_b * asd(b, a)) / (n_a + n_b).
- HD95: the 95th percentile (numpy's linear interpolation) of the pooled distances, as
  MedPy's hd95 (MONAI takes the max of the two directional 95th percentiles instead).
- MaxD is the symmetric Hausdorff distance = MedPy's hd.
Agreement required: 1e-6 relative (observed: ~1e-13, floating-point summation order).
"""
import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi
from medpy.metric import binary as medpy

import liverseg
from conftest import require_data

RTOL = 1e-6
STRUCTURE = {6: 1, 18: 2, 26: 3}


def reference_metrics(a, b, spacing, connectivity=18):
    """The SLiver07 measures from scipy, independently of liverseg."""
    a, b = a != 0, b != 0
    footprint = ndi.generate_binary_structure(3, STRUCTURE[connectivity])
    border_a = a & ~ndi.binary_erosion(a, footprint)
    border_b = b & ~ndi.binary_erosion(b, footprint)
    d_ab = ndi.distance_transform_edt(~border_b, sampling=spacing)[border_a]
    d_ba = ndi.distance_transform_edt(~border_a, sampling=spacing)[border_b]
    pooled = np.concatenate([d_ab, d_ba])
    inter, na, nb = np.sum(a & b), np.sum(a), np.sum(b)
    return {
        "dice": 2 * inter / (na + nb),
        "voe": 100 * (1 - inter / np.sum(a | b)),
        "vd": 100 * (na - nb) / nb,
        "avg_d": pooled.mean(),
        "rms_d": np.sqrt(np.mean(pooled ** 2)),
        "max_d": pooled.max(),
        "hd95": np.percentile(pooled, 95),
        "mean_distance_a_to_b": d_ab.mean(),
        "mean_distance_b_to_a": d_ba.mean(),
        "border_voxels_a": border_a.sum(),
        "border_voxels_b": border_b.sum(),
    }


def assert_matches(got, expected, rtol=RTOL):
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=rtol, abs=1e-12), (key, got[key], value)


def sphere(shape, centre, radius, spacing=(1, 1, 1)):
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def box(shape, lo, hi):
    m = np.zeros(shape, dtype=np.uint8)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
    return m


SPACING = (0.7, 0.9, 2.0)
SHAPE = (48, 40, 24)
SYNTHETIC = {
    "two spheres": (sphere(SHAPE, (15, 17, 22), 9, SPACING), sphere(SHAPE, (18, 15, 24), 10.5, SPACING)),
    "shifted boxes": (box(SHAPE, (5, 6, 4), (30, 25, 15)), box(SHAPE, (8, 6, 5), (33, 27, 16))),
    "nested spheres": (sphere(SHAPE, (16, 18, 23), 7, SPACING), sphere(SHAPE, (16, 18, 23), 11, SPACING)),
    "touching the edge": (box(SHAPE, (0, 0, 0), (20, 40, 10)), box(SHAPE, (2, 0, 1), (22, 38, 12))),
}


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_synthetic_shapes_match_scipy_and_medpy(name, connectivity):
    a, b = SYNTHETIC[name]
    got = liverseg.evaluate(a, b, SPACING, connectivity=connectivity)
    expected = reference_metrics(a, b, SPACING, connectivity)
    assert_matches(got, expected)
    c = STRUCTURE[connectivity]
    assert got["dice"] == pytest.approx(medpy.dc(a, b), rel=RTOL)
    assert got["max_d"] == pytest.approx(medpy.hd(a, b, SPACING, c), rel=RTOL)
    assert got["hd95"] == pytest.approx(medpy.hd95(a, b, SPACING, c), rel=RTOL)
    assert got["mean_distance_a_to_b"] == pytest.approx(medpy.asd(a, b, SPACING, c), rel=RTOL)
    assert got["mean_distance_b_to_a"] == pytest.approx(medpy.asd(b, a, SPACING, c), rel=RTOL)
    assert got["vd"] == pytest.approx(100 * medpy.ravd(a, b), rel=RTOL)
    pooled_mean = ((got["border_voxels_a"] * medpy.asd(a, b, SPACING, c) + got["border_voxels_b"] * medpy.asd(b, a, SPACING, c))
                   / (got["border_voxels_a"] + got["border_voxels_b"]))
    assert got["avg_d"] == pytest.approx(pooled_mean, rel=RTOL)


def test_known_answers():
    shape = (9, 9, 9)
    a, b = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    a[1, 2, 3] = 1
    b[4, 6, 3] = 1  # 3 voxels along x, 4 along y
    m = liverseg.evaluate(a, b, (1.5, 0.5, 9.0))
    d = np.hypot(3 * 1.5, 4 * 0.5)
    for key in ("avg_d", "rms_d", "max_d", "hd95"):
        assert m[key] == pytest.approx(d, rel=1e-15)
    assert (m["dice"], m["voe"], m["vd"]) == (0, 100, 0)
    # Boxes of 10×10×4 and 10×10×5 voxels sharing 10×10×4: exact volume measures.
    a, b = box(shape, (0, 0, 0), (9, 9, 4)), box(shape, (0, 0, 0), (9, 9, 5))
    m = liverseg.evaluate(a, b, (1, 1, 2.5))
    assert m["dice"] == pytest.approx(2 * 4 / 9)
    assert m["voe"] == pytest.approx(20) and m["vd"] == pytest.approx(-20)
    assert m["max_d"] == pytest.approx(2.5)


def test_empty_masks_have_documented_results():
    empty = np.zeros((5, 5, 5), np.uint8)
    full = box((5, 5, 5), (1, 1, 1), (4, 4, 4))
    m = liverseg.evaluate(empty, empty, (1, 1, 1))
    assert (m["dice"], m["voe"], m["vd"], m["avg_d"], m["max_d"], m["hd95"]) == (1, 0, 0, 0, 0, 0)
    assert m["scores"]["total"] == 100
    m = liverseg.evaluate(empty, full, (1, 1, 1))
    assert (m["dice"], m["voe"], m["vd"]) == (0, 100, -100)
    assert m["avg_d"] == np.inf and m["scores"]["avg_d"] == 0 and m["scores"]["vd"] == 0
    m = liverseg.evaluate(full, empty, (1, 1, 1))
    assert m["vd"] == np.inf and m["scores"]["total"] == 0
    assert not any(np.isnan(v) for v in m.values() if isinstance(v, float))


def test_scores_follow_sliver07():
    a, b = SYNTHETIC["two spheres"]
    m = liverseg.evaluate(a, b, SPACING)
    s = m["scores"]
    for key, ref in [("voe", 6.4), ("vd", 4.7), ("avg_d", 1.0), ("rms_d", 1.8), ("max_d", 19.0)]:
        assert s[key] == pytest.approx(max(0.0, 100 - 25 * abs(m[key]) / ref))
    assert s["total"] == pytest.approx(np.mean([s[k] for k in ("voe", "vd", "avg_d", "rms_d", "max_d")]))


def test_threads_do_not_change_results():
    a, b = SYNTHETIC["two spheres"]
    assert liverseg.evaluate(a, b, SPACING, threads=1) == liverseg.evaluate(a, b, SPACING, threads=2)


def test_bad_arguments():
    a = np.zeros((3, 3, 3))
    with pytest.raises(ValueError):
        liverseg.evaluate(a, np.zeros((3, 3, 2)), (1, 1, 1))
    with pytest.raises(liverseg.Error, match="connectivity"):
        liverseg.evaluate(a, a, (1, 1, 1), connectivity=8)
    with pytest.raises(liverseg.Error, match="spacing"):
        liverseg.evaluate(a, a, (1, 0, 1))


@pytest.fixture(scope="module")
def ircadb_mask():
    img = nib.load(require_data("ircadb1-01/liver.nii.gz"))
    return np.asarray(img.dataobj) != 0, img.header.get_zooms()


def test_real_mask_against_eroded_and_shifted_copies(ircadb_mask):
    mask, spacing = ircadb_mask
    for other in (ndi.binary_erosion(mask, iterations=2), np.roll(mask, (3, -2, 1), axis=(0, 1, 2))):
        got = liverseg.evaluate(other, mask, spacing)
        # scipy on the bounding box of both masks plus a background margin: the same borders
        # and nearest-border distances as on the whole grid, in a tenth of the time.
        lo = np.maximum(np.argwhere(other | mask).min(axis=0) - 2, 0)
        hi = np.argwhere(other | mask).max(axis=0) + 3
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        assert_matches(got, reference_metrics(other[crop], mask[crop], spacing, 18))


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_external_masks_against_medpy(connectivity):
    img = nib.load(require_data("totalseg-example/liver-3mm.nii.gz"))
    mask, spacing = np.asarray(img.dataobj) != 0, img.header.get_zooms()
    other = ndi.binary_dilation(np.roll(mask, 1, axis=2), iterations=1)
    got = liverseg.evaluate(other, mask, spacing, connectivity=connectivity)
    assert_matches(got, reference_metrics(other, mask, spacing, connectivity))
    c = STRUCTURE[connectivity]
    assert got["hd95"] == pytest.approx(medpy.hd95(other, mask, spacing, c), rel=RTOL)
    assert got["max_d"] == pytest.approx(medpy.hd(other, mask, spacing, c), rel=RTOL)
    assert got["mean_distance_a_to_b"] == pytest.approx(medpy.asd(other, mask, spacing, c), rel=RTOL)
