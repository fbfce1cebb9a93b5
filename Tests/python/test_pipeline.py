"""The whole-volume pipeline against an independent chain: nibabel reorientation, scipy
trilinear resampling (map_coordinates, order 1), PyTorch float64 network, eq. 4 fusion."""
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform
from scipy.ndimage import map_coordinates

import liverseg
import torch_reference
from conftest import small_architecture


def grid_coordinates(n_out, n_in):
    """Voxel-centre-aligned sample positions, clamped to the source (liverseg's convention)."""
    return np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)


def resample(volume, shape):
    axes = [grid_coordinates(o, i) for o, i in zip(shape, volume.shape)]
    coords = np.meshgrid(*axes, indexing="ij")
    return map_coordinates(volume, coords, order=1, mode="nearest")


def reference_segmentation(ct, affine, model_path):
    weights, doc = torch_reference.load(str(model_path))
    pre = doc["preprocessing"]
    to_model = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(pre["orientation"])))
    canonical = apply_orientation(ct.astype(np.float64), to_model)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)[to_model[:, 0].astype(int).argsort()]
    grid = [max(1, int(round(n * s / m))) for n, s, m in zip(canonical.shape, spacing, pre["spacing_mm"])]
    lo, hi = pre["hu_window"]
    normalised = (np.clip(resample(canonical, grid), lo, hi) - pre["mean"]) / pre["std"]
    padded_shape = [(g + 3) // 4 * 4 for g in grid]
    padded = np.full(padded_shape, (lo - pre["mean"]) / pre["std"])
    padded[:grid[0], :grid[1], :grid[2]] = normalised
    main, b1, b2 = torch_reference.forward(weights, padded)
    tau1, tau2 = doc["fusion"]["tau"]
    fused = ((1 - tau1 - tau2) * main + tau1 * b1 + tau2 * b2)[:grid[0], :grid[1], :grid[2]]
    back = resample(fused, canonical.shape)
    return apply_orientation(back, ornt_transform(axcodes2ornt(tuple(pre["orientation"])), io_orientation(affine)))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_preprocessing_matches_scipy(small_model, small_model_path, ircadb01, dtype):
    """Reorientation (nibabel), trilinear resampling (scipy.ndimage.map_coordinates,
    order 1) and intensity normalisation, against liverseg_preprocess."""
    ct, affine, _ = ircadb01
    ct = ct[:, :, 30:90].astype(dtype)
    _, doc = torch_reference.load(str(small_model_path))
    pre = doc["preprocessing"]
    ours = small_model.preprocess(ct, affine=affine)
    to_model = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(pre["orientation"])))
    canonical = apply_orientation(ct.astype(np.float64), to_model)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)[to_model[:, 0].astype(int).argsort()]
    grid = [max(1, int(round(n * s / m))) for n, s, m in zip(canonical.shape, spacing, pre["spacing_mm"])]
    lo, hi = pre["hu_window"]
    reference = (np.clip(resample(canonical, grid), lo, hi) - pre["mean"]) / pre["std"]
    assert ours.shape == tuple(grid)
    assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max()


def test_segmentation_matches_independent_chain(small_model, small_model_path, ircadb01):
    ct, affine, _ = ircadb01
    ct = ct[100:420:2, 60:400:2, 20:120]              # a smaller real-CT volume
    affine = affine @ np.diag([2.0, 2.0, 1.0, 1.0])   # its geometry: every 2nd voxel in x, y
    affine[:3, 3] = (np.asarray(affine) @ [0, 0, 0, 1])[:3]
    mask, probability = small_model.segment(ct, affine=affine, return_probability=True, postprocess=False, crf=False)
    reference = reference_segmentation(ct, affine, small_model_path)
    assert probability.shape == ct.shape
    assert np.abs(probability - reference).max() < 2e-5
    assert np.array_equal(mask, (probability >= 0.5).astype(np.uint8))
    assert 0.01 < mask.mean() < 0.99   # a random model, but not a constant one
    # Without the probability the mask is thresholded slab by slab while mapping back: the
    # same mask, at other thresholds too.
    assert np.array_equal(small_model.segment(ct, affine=affine, postprocess=False, crf=False), mask)
    for threshold in (0.3, 0.7):
        expected = (probability >= threshold).astype(np.uint8)
        assert np.array_equal(small_model.segment(ct, affine=affine, postprocess=False, threshold=threshold, crf=False),
                              expected)


@pytest.mark.parametrize("kernels,shape,budget", [
    (None, (40, 40, 240), 220_000),                 # paper kernels: tiles along z
    ([[3, 3, 3]] * 5 + [[1, 1, 1]], (96, 88, 40), 150_000),  # small kernels: tiles along x and y
])
def test_tiled_equals_untiled(tmp_path, kernels, shape, budget):
    """Tiles overlapping by the receptive halo reproduce the single-pass output."""
    arch = small_architecture(kernels)
    arch["conv_channels"] = [2, 2, 2, 2, 2, 2]
    path = tmp_path / "m.safetensors"
    pre = dict(liverseg.model_file.DEFAULT_PREPROCESSING, spacing_mm=[1.0, 1.0, 1.0])
    liverseg.save_model(path, arch, liverseg.random_weights(arch, seed=9), preprocessing=pre)
    model = liverseg.Model(path)
    ct = (np.random.default_rng(0).standard_normal(shape) * 150).astype(np.float32)
    messages = []
    liverseg.set_log_callback(lambda level, m: messages.append(m), level=0)
    try:
        _, whole = model.segment(ct, spacing=(1, 1, 1), return_probability=True)
        _, tiled = model.segment(ct, spacing=(1, 1, 1), return_probability=True, max_tile_voxels=budget)
    finally:
        liverseg.set_log_callback(None)
    tiles = [m for m in messages if "tile(s)" in m]
    assert " 1 tile(s)" in tiles[0] and " 1 tile(s)" not in tiles[1], tiles
    assert np.abs(whole - tiled).max() < 1e-6


@pytest.mark.parametrize("perm,flips", [((0, 1, 2), (True, False, False)), ((2, 0, 1), (False, True, True)),
                                        ((1, 0, 2), (True, True, True))])
def test_reoriented_copy_gives_the_same_mask(small_model, ircadb01, perm, flips):
    ct, affine, _ = ircadb01
    ct = ct[::4, ::4, ::2]
    affine = affine @ np.diag([4.0, 4.0, 2.0, 1.0])
    # Without the CRF: its permutohedral lattice's approximation depends on the order of the
    # points, so a reoriented copy agrees with it closely but not bit for bit.
    mask = small_model.segment(ct, affine=affine, crf=False)
    # The same anatomy stored with permuted/flipped axes, with the matching affine.
    copy = np.transpose(ct, perm)
    index_map = np.zeros((4, 4))
    index_map[3, 3] = 1
    for new_axis, old_axis in enumerate(perm):
        n = copy.shape[new_axis]
        if flips[new_axis]:
            index_map[old_axis, new_axis] = -1
            index_map[old_axis, 3] = n - 1
        else:
            index_map[old_axis, new_axis] = 1
    copy = copy[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    copy_mask = small_model.segment(copy, affine=affine @ index_map, crf=False)
    back = copy_mask[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    back = np.transpose(back, np.argsort(perm))
    assert np.array_equal(back, mask)


def test_segmentation_is_deterministic(small_model, ircadb01):
    ct, affine, _ = ircadb01
    ct = ct[::4, ::4, :]
    affine = affine @ np.diag([4.0, 4.0, 1.0, 1.0])
    a = small_model.segment(ct, affine=affine, threads=1, return_probability=True)[1]
    b = small_model.segment(ct, affine=affine, threads=2, return_probability=True)[1]
    assert np.array_equal(a, b)
