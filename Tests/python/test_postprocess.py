"""Mask post-processing in segment, checked against scipy.ndimage (an independent
implementation of connected components and hole filling), and the struct_size rules that
let programs built against 0.1's smaller liverseg_segment_params keep working."""
import ctypes

import numpy as np
import pytest
from scipy import ndimage

import liverseg
from liverseg import _lib
from liverseg._lib import lib


def scipy_postprocess(raw, steps=("largest_component", "fill_holes_3d", "fill_holes_slices")):
    """The documented steps with scipy on a [x, y, z] mask whose head-to-foot axis is z."""
    mask = raw.astype(bool)
    if "largest_component" in steps:
        # Label in memory order (x fastest) so that ties resolve as the library's do.
        labels, n = ndimage.label(mask.T)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            mask = (labels == 1 + int(np.argmax(sizes))).T
    if "fill_holes_3d" in steps:
        mask = ndimage.binary_fill_holes(mask)
    if "fill_holes_slices" in steps:
        mask = np.stack([ndimage.binary_fill_holes(mask[:, :, k]) for k in range(mask.shape[2])], axis=2)
    return mask.astype(np.uint8)


@pytest.fixture(scope="module")
def raw_and_cleaned(small_model, ircadb01):
    ct, affine, _ = ircadb01
    ct = ct[::2, ::2, :]           # half the voxels: a faster test with the same geometry kind
    affine = affine @ np.diag([2, 2, 1, 1])
    raw = small_model.segment(ct, affine=affine, postprocess=False)
    return ct, affine, raw, small_model.segment(ct, affine=affine)


def test_default_post_processing_matches_scipy(raw_and_cleaned):
    _, _, raw, cleaned = raw_and_cleaned
    # Not vacuous: the random model's raw mask has many pieces and holes.
    assert ndimage.label(raw)[1] > 1
    assert ndimage.binary_fill_holes(raw).sum() > raw.sum()
    assert np.array_equal(cleaned, scipy_postprocess(raw))
    assert ndimage.label(cleaned)[1] == 1


def test_post_processing_follows_the_crf(small_model, raw_and_cleaned):
    ct, affine, _, _ = raw_and_cleaned
    ct, affine = ct[:, :, 40:80], affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 40], [0, 0, 0, 1]])
    refined = small_model.segment(ct, affine=affine, crf=True, postprocess=False)
    assert np.array_equal(small_model.segment(ct, affine=affine, crf=True), scipy_postprocess(refined))


@pytest.mark.parametrize("steps", [["largest_component"], ["fill_holes_3d"], ["fill_holes_slices"],
                                   ["largest_component", "fill_holes_slices"]])
def test_each_step_matches_scipy(small_model, raw_and_cleaned, steps):
    ct, affine, raw, _ = raw_and_cleaned
    assert np.array_equal(small_model.segment(ct, affine=affine, postprocess=steps), scipy_postprocess(raw, steps))


def test_unknown_steps_are_errors(small_model, raw_and_cleaned):
    ct, affine, _, _ = raw_and_cleaned
    with pytest.raises(ValueError, match="unknown post-processing step"):
        small_model.segment(ct, affine=affine, postprocess=["largest"])
    params = _lib.segment_params()
    params.postprocess = 8
    volume = _lib.Volume()
    a = np.asfortranarray(ct)
    volume.data, volume.dtype = a.ctypes.data, _lib.DTYPE_INT16
    volume.dims[:], volume.spacing[:] = a.shape, (1.0, 1.0, 1.0)
    out = np.empty(a.shape, np.uint8, order="F")
    assert lib.liverseg_segment(small_model._handle, ctypes.byref(volume), ctypes.byref(params), out.ctypes.data,
                                None) == _lib.INVALID_ARGUMENT
    assert "postprocess 8" in lib.liverseg_last_error().decode()


SIZE_0_1 = _lib.SegmentParams.postprocess.offset


def call(model, ct, affine, params):
    a = np.asfortranarray(ct)
    volume = _lib.Volume()
    volume.data, volume.dtype = a.ctypes.data, _lib.DTYPE_INT16
    volume.dims[:] = a.shape
    volume.spacing[:] = np.linalg.norm(affine[:3, :3], axis=0)
    matrix = (ctypes.c_double * 16)(*np.ascontiguousarray(affine, dtype=np.float64).ravel())
    volume.ijk_to_ras = matrix
    out = np.empty(a.shape, np.uint8, order="F")
    status = lib.liverseg_segment(model._handle, ctypes.byref(volume), ctypes.byref(params), out.ctypes.data, None)
    return status, out


def test_params_of_the_0_1_size_take_defaults_for_newer_fields(small_model, raw_and_cleaned):
    ct, affine, raw, cleaned = raw_and_cleaned
    assert SIZE_0_1 == 56 and ctypes.sizeof(_lib.SegmentParams) == 64
    params = _lib.segment_params()
    params.struct_size = SIZE_0_1
    params.postprocess = 0          # beyond a 0.1 caller's struct: must not be read
    status, out = call(small_model, ct, affine, params)
    assert status == 0 and np.array_equal(out, cleaned)
    params.struct_size = ctypes.sizeof(_lib.SegmentParams)
    status, out = call(small_model, ct, affine, params)
    assert status == 0 and np.array_equal(out, raw)


@pytest.mark.parametrize("size", [0, 8, SIZE_0_1 - 8, SIZE_0_1 + 4, 72, 1 << 40])
def test_unknown_struct_sizes_are_rejected(small_model, raw_and_cleaned, size):
    ct, affine, _, _ = raw_and_cleaned
    params = _lib.segment_params()
    params.struct_size = size
    status, _ = call(small_model, ct, affine, params)
    assert status == _lib.INVALID_ARGUMENT
    message = lib.liverseg_last_error().decode()
    assert f"struct_size is {size}" in message and "56 or 64" in message
    if size > 64:
        assert "newer" in message


def test_params_init_writes_only_the_callers_size():
    buffer = (ctypes.c_ubyte * 128)(*([0xA5] * 128))
    assert lib.liverseg_segment_params_init(ctypes.cast(buffer, ctypes.POINTER(_lib.SegmentParams)), SIZE_0_1) == 0
    assert bytes(buffer[SIZE_0_1:]) == b"\xa5" * (128 - SIZE_0_1)
    params = _lib.SegmentParams.from_buffer_copy(bytes(buffer[:64]))
    assert params.struct_size == SIZE_0_1 and params.threshold == 0.5
    full = _lib.segment_params()
    assert full.struct_size == 64 and full.postprocess == _lib.POSTPROCESS_ALL
    assert lib.liverseg_segment_params_init(None, 64) == _lib.INVALID_ARGUMENT
    assert lib.liverseg_segment_params_init(ctypes.byref(full), 60) == _lib.INVALID_ARGUMENT
    assert "struct_size argument" in lib.liverseg_last_error().decode()
