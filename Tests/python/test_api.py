"""The C boundary: bad input gets a status and a message naming the problem, never a crash."""
import ctypes
import threading

import numpy as np
import pytest

import liverseg
from liverseg import _lib
from liverseg._lib import lib


def volume_for(array, spacing=(1.0, 1.0, 1.0), matrix=None):
    a = np.asfortranarray(array)
    v = _lib.Volume()
    v.data = a.ctypes.data
    v.dtype = {np.dtype(np.int16): 1, np.dtype(np.int32): 2, np.dtype(np.float32): 3}[a.dtype]
    v.dims[:] = a.shape
    v.spacing[:] = spacing
    if matrix is not None:
        v.ijk_to_ras = np.ascontiguousarray(matrix, dtype=np.float64).ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    return a, v


def call_segment(model, v, params=None, mask_size=None):
    n = int(np.prod(list(v.dims))) if mask_size is None else mask_size
    mask = np.zeros(max(n, 1), np.uint8)
    status = lib.liverseg_segment(model._handle, ctypes.byref(v), None if params is None else ctypes.byref(params),
                                  mask.ctypes.data, None)
    return status, lib.liverseg_last_error().decode()


def test_version_and_status_names():
    from test_consumers import header_version
    assert liverseg.version() == header_version()
    assert lib.liverseg_abi_version() == 0
    assert lib.liverseg_status_name(6) == b"LIVERSEG_CANCELLED"
    assert lib.liverseg_status_name(99) == b"unknown status"


def test_null_pointers(small_model):
    a, v = volume_for(np.zeros((8, 8, 8), np.int16))
    mask = np.zeros(512, np.uint8)
    assert lib.liverseg_segment(None, ctypes.byref(v), None, mask.ctypes.data, None) == _lib.INVALID_ARGUMENT
    assert "model is NULL" in lib.liverseg_last_error().decode()
    assert lib.liverseg_segment(small_model._handle, None, None, mask.ctypes.data, None) == _lib.INVALID_ARGUMENT
    assert "volume is NULL" in lib.liverseg_last_error().decode()
    assert lib.liverseg_segment(small_model._handle, ctypes.byref(v), None, None, None) == _lib.INVALID_ARGUMENT
    assert "out_mask is NULL" in lib.liverseg_last_error().decode()
    v.data = None
    assert call_segment(small_model, v)[1].endswith("volume->data is NULL")
    assert lib.liverseg_model_load_file(None, None) == _lib.INVALID_ARGUMENT
    lib.liverseg_model_free(None)  # documented as fine


def test_stale_or_foreign_model_pointer():
    a, v = volume_for(np.zeros((8, 8, 8), np.int16))
    bogus = ctypes.c_void_p(0x1234)
    mask = np.zeros(512, np.uint8)
    assert lib.liverseg_segment(bogus, ctypes.byref(v), None, mask.ctypes.data, None) == _lib.INVALID_ARGUMENT
    assert "not a live liverseg_model" in lib.liverseg_last_error().decode()
    lib.liverseg_model_free(bogus)  # ignored, not a crash


@pytest.mark.parametrize("mutate,pattern", [
    (lambda v: setattr(v, "dtype", 11), "volume->dtype 11 is not a liverseg_dtype"),
    (lambda v: v.dims.__setitem__(1, 0), "dims"),
    (lambda v: v.dims.__setitem__(2, 2**62), "overflows|too large"),
    (lambda v: v.spacing.__setitem__(0, float("nan")), "spacing"),
    (lambda v: v.spacing.__setitem__(2, -1.0), "spacing"),
])
def test_bad_volume_descriptors(small_model, mutate, pattern):
    a, v = volume_for(np.zeros((8, 8, 8), np.int16))
    mutate(v)
    status, message = call_segment(small_model, v, mask_size=512)
    assert status == _lib.INVALID_ARGUMENT
    assert pytest.importorskip("re").search(pattern, message), message


def test_bad_matrices(small_model):
    a, v = volume_for(np.zeros((8, 8, 8), np.int16), spacing=(1, 1, 2))
    keep = np.diag([1.0, 1.0, 1.0, 1.0])
    v.ijk_to_ras = keep.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    status, message = call_segment(small_model, v)
    assert status == _lib.INVALID_ARGUMENT and "column 2 has length 1.0 mm but spacing[2] is 2.0" in message
    diagonal = np.array([[1, 1, 0, 0], [1, -1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]], float) / [2**0.5, 2**0.5, 1, 1]
    a, v = volume_for(np.zeros((8, 8, 8), np.int16), spacing=(1, 1, 2), matrix=diagonal)
    status, message = call_segment(small_model, v)
    assert status == _lib.INVALID_ARGUMENT and "no clear axis orientation" in message


def test_nan_voxels_are_rejected(small_model):
    ct = np.zeros((8, 8, 8), np.float32)
    ct[3, 2, 1] = np.nan
    with pytest.raises(liverseg.Error, match="NaN"):
        small_model.segment(ct, spacing=(4, 4, 4))


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_voxels_are_rejected_by_segment_and_crf(small_model, value):
    ct = np.zeros((8, 8, 8), np.float32)
    ct[3, 2, 1] = value  # flat index 3 + 8 * (2 + 8 * 1) = 83
    with pytest.raises(liverseg.Error, match=r"voxel 83 \(flat index\).*NaN and ±Inf") as e:
        small_model.segment(ct, spacing=(4, 4, 4))
    assert e.value.status == _lib.INVALID_ARGUMENT
    with pytest.raises(liverseg.Error, match=r"voxel 83 \(flat index\)"):
        liverseg.refine_crf(ct, np.full(ct.shape, 0.5, np.float32), spacing=(4, 4, 4))
    # float64 beyond float32's range would become Inf in the network's float32 arithmetic.
    big = np.zeros((8, 8, 8), np.float64)
    big[3, 2, 1] = 1e300
    with pytest.raises(liverseg.Error, match=r"voxel 83 \(flat index\)"):
        small_model.segment(big, spacing=(4, 4, 4))


@pytest.mark.parametrize("key,value", [("mean", 1e308), ("std", 1e-300), ("hu_window", [-1e300, 400.0])])
def test_preprocessing_not_finite_in_float32_is_refused_at_load(tmp_path, key, value):
    from conftest import small_architecture
    arch = small_architecture()
    pre = dict(liverseg.model_file.DEFAULT_PREPROCESSING, **{key: value})
    liverseg.save_model(tmp_path / "m.safetensors", arch, liverseg.random_weights(arch), preprocessing=pre)
    with pytest.raises(liverseg.Error, match="non-finite float32 network inputs") as e:
        liverseg.Model(tmp_path / "m.safetensors")
    assert e.value.status == _lib.INVALID_MODEL


@pytest.mark.parametrize("dims,spacing", [((1, 1, 1), (3e38, 1, 1)), ((2, 1, 1), (1, 1.7e308, 1)),
                                          ((1, 1, 1), (1e5, 1, 1)), ((1000, 1000, 1000), (5, 5, 5))])
def test_model_grid_beyond_its_limits_is_refused(small_model, dims, spacing):
    """The small model's grid is 4 mm: 3e38 mm overflowed Int; 1e5 mm is 25000 voxels;
    1000³ voxels of 5 mm is 1250³ > 2^30 model voxels."""
    a = np.zeros(1, np.int16)  # never read: the grid is refused first
    v = _lib.Volume()
    v.data = a.ctypes.data
    v.dtype = _lib.DTYPE_INT16
    v.dims[:] = dims
    v.spacing[:] = spacing
    out = (ctypes.c_size_t * 3)()
    assert lib.liverseg_model_grid_dims(small_model._handle, ctypes.byref(v), out) == _lib.INVALID_ARGUMENT
    message = lib.liverseg_last_error().decode()
    assert "more than the 4096" in message or "more than the 1073741824" in message, message


def test_every_dtype_segments_like_float32(small_model):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 120, size=(12, 10, 8)).astype(np.float32)  # fits int8
    expected = small_model.segment(base, spacing=(4, 4, 4), return_probability=True)[1]
    for code, dtype in _lib.NUMPY_DTYPES.items():
        a = np.asfortranarray(base.astype(dtype))
        _, v = volume_for(np.zeros((1, 1, 1), np.int16))
        v.data, v.dtype = a.ctypes.data, code
        v.dims[:], v.spacing[:] = a.shape, (4, 4, 4)
        probability = np.empty(a.shape, np.float32, order="F")
        mask = np.empty(a.shape, np.uint8, order="F")
        assert lib.liverseg_segment(small_model._handle, ctypes.byref(v), None, mask.ctypes.data,
                                    probability.ctypes.data) == _lib.OK, (dtype, lib.liverseg_last_error())
        assert np.array_equal(probability, expected), dtype


def test_bad_params(small_model):
    a, v = volume_for(np.zeros((8, 8, 8), np.int16))
    params = _lib.segment_params()
    assert params.struct_size == ctypes.sizeof(_lib.SegmentParams)
    params.struct_size = 3
    assert "struct_size is 3" in call_segment(small_model, v, params)[1]
    params = _lib.segment_params()
    params.threshold = 1.5
    assert "threshold" in call_segment(small_model, v, params)[1]
    params = _lib.segment_params()
    params.n_threads = -2
    assert "n_threads" in call_segment(small_model, v, params)[1]
    params = _lib.segment_params()
    params.max_tile_voxels = 10
    assert "max_tile_voxels 10 is too small" in call_segment(small_model, v, params)[1]
    info = _lib.ModelInfo()
    assert lib.liverseg_model_get_info(None, ctypes.byref(info)) == _lib.INVALID_ARGUMENT
    assert lib.liverseg_model_get_info(small_model._handle, ctypes.byref(info)) == _lib.INVALID_ARGUMENT
    assert "info.struct_size is 0" in lib.liverseg_last_error().decode()


def test_progress_reports_and_cancels(small_model):
    ct = np.zeros((40, 40, 20), np.int16)
    # The last stage is the CRF by default (3), the post-processing without it (2).
    for options, last_stage in (({}, 3), ({"crf": False}, 2)):
        seen = []
        small_model.segment(ct, spacing=(2, 2, 2), progress=lambda f, s: seen.append((f, s)) and False, **options)
        fractions = [f for f, _ in seen]
        assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
        assert [s for _, s in seen][0] == 0 and [s for _, s in seen][-1] == last_stage, options
    with pytest.raises(liverseg.Error) as e:
        small_model.segment(ct, spacing=(2, 2, 2), progress=lambda f, s: s == 1)
    assert e.value.status == _lib.CANCELLED and "cancelled" in str(e.value)


def test_errors_are_thread_local(small_model):
    a, v = volume_for(np.zeros((8, 8, 8), np.int16))
    v.dtype = 11  # not a liverseg_dtype
    call_segment(small_model, v)
    other = []
    t = threading.Thread(target=lambda: other.append(lib.liverseg_last_error()))
    t.start(); t.join()
    assert other == [b""] and b"dtype" in lib.liverseg_last_error()


def test_one_model_many_threads(small_model, ircadb01):
    ct, affine, _ = ircadb01
    ct = np.asfortranarray(ct[::4, ::4, :])
    affine = affine @ np.diag([4.0, 4.0, 1.0, 1.0])
    expected = small_model.segment(ct, affine=affine, threads=1)
    results = [None] * 4
    def work(i):
        results[i] = small_model.segment(ct, affine=affine, threads=1)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert all(np.array_equal(r, expected) for r in results)


def test_preprocess_checks_the_output_size(small_model):
    a, v = volume_for(np.zeros((40, 40, 20), np.int16), spacing=(2, 2, 2))
    dims = (ctypes.c_size_t * 3)()
    assert lib.liverseg_model_grid_dims(small_model._handle, ctypes.byref(v), dims) == _lib.OK
    assert list(dims) == [20, 20, 10]   # 40 voxels × 2 mm on a 4 mm grid
    out = np.zeros(4000, np.float32)
    assert lib.liverseg_preprocess(small_model._handle, ctypes.byref(v), 0, out.ctypes.data, 3999) == _lib.INVALID_ARGUMENT
    assert "out_count 3999 but the model grid 20×20×10 has 4000 voxels" in lib.liverseg_last_error().decode()
    assert lib.liverseg_preprocess(small_model._handle, ctypes.byref(v), 0, None, 4000) == _lib.INVALID_ARGUMENT


def test_exception_in_progress_callback_cancels_and_is_raised(small_model):
    def progress(fraction, stage):
        raise ValueError("stop here")
    with pytest.raises(ValueError, match="stop here"):
        small_model.segment(np.zeros((40, 40, 20), np.int16), spacing=(2, 2, 2), progress=progress)
