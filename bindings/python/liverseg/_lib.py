"""Loading libliverseg and the ctypes mirror of include/liverseg.h.

The library is found through the LIVERSEG_LIBRARY environment variable, then next to
this package (a wheel or a `make install` layout), then the system's search path.
"""
import ctypes
import ctypes.util
import os
from pathlib import Path

import numpy as np

# Status codes (liverseg_status); values never change meaning.
OK = 0
INVALID_ARGUMENT = 1
IO_ERROR = 2
INVALID_MODEL = 3
UNSUPPORTED = 4
OUT_OF_MEMORY = 5
CANCELLED = 6
INTERNAL_ERROR = 7

# liverseg_dtype: the voxel type of volumes and image files alike.
DTYPE_INT16 = 1
DTYPE_INT32 = 2
DTYPE_FLOAT32 = 3
DTYPE_UINT8 = 4
DTYPE_INT8 = 5
DTYPE_UINT16 = 6
DTYPE_UINT32 = 7
DTYPE_UINT64 = 8
DTYPE_INT64 = 9
DTYPE_FLOAT64 = 10

# numpy dtype of each liverseg_dtype, and back.
NUMPY_DTYPES = {DTYPE_INT16: np.dtype(np.int16), DTYPE_INT32: np.dtype(np.int32), DTYPE_FLOAT32: np.dtype(np.float32),
                DTYPE_UINT8: np.dtype(np.uint8), DTYPE_INT8: np.dtype(np.int8), DTYPE_UINT16: np.dtype(np.uint16),
                DTYPE_UINT32: np.dtype(np.uint32), DTYPE_UINT64: np.dtype(np.uint64), DTYPE_INT64: np.dtype(np.int64),
                DTYPE_FLOAT64: np.dtype(np.float64)}
DTYPES = {numpy: code for code, numpy in NUMPY_DTYPES.items()}


class Error(RuntimeError):
    """A liverseg call failed. `status` is the liverseg_status code; str() is the message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class ModelInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("format_version", ctypes.c_int),
        ("conv_channels", ctypes.c_int * 6),
        ("conv_kernel", (ctypes.c_int * 3) * 6),
        ("main_deconv_channels", ctypes.c_int),
        ("branch2_deconv_channels", ctypes.c_int),
        ("n_classes", ctypes.c_int),
        ("spacing", ctypes.c_double * 3),
        ("orientation", ctypes.c_char * 4),
        ("hu_window", ctypes.c_double * 2),
        ("intensity_mean", ctypes.c_double),
        ("intensity_std", ctypes.c_double),
        ("fusion_tau", ctypes.c_double * 2),
        ("n_parameters", ctypes.c_size_t),
        ("n_networks", ctypes.c_int),  # since 0.5
    ]


class Volume(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("dims", ctypes.c_size_t * 3),
        ("spacing", ctypes.c_double * 3),
        ("ijk_to_ras", ctypes.POINTER(ctypes.c_double)),
    ]


PROGRESS_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_double, ctypes.c_int, ctypes.c_void_p)
LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class SegmentParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("n_threads", ctypes.c_int),
        ("max_tile_voxels", ctypes.c_size_t),
        ("threshold", ctypes.c_float),
        ("crf", ctypes.c_int),
        ("crf_params", ctypes.c_void_p),
        ("progress", PROGRESS_CALLBACK),
        ("progress_user_data", ctypes.c_void_p),
        ("postprocess", ctypes.c_uint),
    ]


# liverseg_postprocess bits (include/liverseg.h).
POSTPROCESS = {"largest_component": 1, "fill_holes_3d": 2, "fill_holes_slices": 4}
POSTPROCESS_ALL = 7


def segment_params():
    """A liverseg_segment_params holding the library's defaults (liverseg_segment_params_init)."""
    params = SegmentParams()
    check(lib.liverseg_segment_params_init(ctypes.byref(params), ctypes.sizeof(params)))
    return params


def _candidates():
    env = os.environ.get("LIVERSEG_LIBRARY")
    if env:
        yield env
        return
    here = Path(__file__).resolve().parent
    for name in ("libliverseg.so", "libliverseg.so.0"):
        for folder in (here, here.parent, here.parent.parent / "lib"):
            if (folder / name).exists():
                yield str(folder / name)
    found = ctypes.util.find_library("liverseg")
    if found:
        yield found


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise OSError("libliverseg not found; set LIVERSEG_LIBRARY to its path. Tried: " + ("; ".join(errors) or "nothing"))


def _declare(lib):
    """Sets the C signatures of the header's functions on a loaded library."""
    P = ctypes.POINTER
    lib.liverseg_version.restype = ctypes.c_char_p
    lib.liverseg_abi_version.restype = ctypes.c_int
    lib.liverseg_last_error.restype = ctypes.c_char_p
    lib.liverseg_status_name.restype = ctypes.c_char_p
    lib.liverseg_status_name.argtypes = [ctypes.c_int]
    lib.liverseg_set_log_callback.restype = None
    lib.liverseg_set_log_callback.argtypes = [LOG_CALLBACK, ctypes.c_int, ctypes.c_void_p]
    lib.liverseg_model_load_file.argtypes = [ctypes.c_char_p, P(ctypes.c_void_p)]
    lib.liverseg_model_load_memory.argtypes = [ctypes.c_void_p, ctypes.c_size_t, P(ctypes.c_void_p)]
    lib.liverseg_model_free.argtypes = [ctypes.c_void_p]
    lib.liverseg_model_free.restype = None
    lib.liverseg_model_get_info.argtypes = [ctypes.c_void_p, P(ModelInfo)]
    lib.liverseg_model_metadata_json.argtypes = [ctypes.c_void_p]
    lib.liverseg_model_metadata_json.restype = ctypes.c_char_p
    lib.liverseg_segment_params_init.argtypes = [P(SegmentParams), ctypes.c_size_t]
    lib.liverseg_segment.argtypes = [ctypes.c_void_p, P(Volume), P(SegmentParams), ctypes.c_void_p, ctypes.c_void_p]
    lib.liverseg_network_forward.argtypes = [ctypes.c_void_p, ctypes.c_void_p, P(ctypes.c_size_t), ctypes.c_int,
                                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.liverseg_network_loss_gradient.argtypes = [ctypes.c_void_p, ctypes.c_void_p, P(ctypes.c_size_t), ctypes.c_void_p,
                                                   ctypes.c_double, ctypes.c_double, ctypes.c_int, ctypes.c_void_p,
                                                   ctypes.c_void_p]
    lib.liverseg_model_grid_dims.argtypes = [ctypes.c_void_p, P(Volume), P(ctypes.c_size_t)]
    lib.liverseg_preprocess.argtypes = [ctypes.c_void_p, P(Volume), ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    for name in ("liverseg_segment_params_init", "liverseg_network_loss_gradient", "liverseg_model_grid_dims", "liverseg_preprocess", "liverseg_model_load_file", "liverseg_model_load_memory", "liverseg_model_get_info",
                 "liverseg_segment", "liverseg_network_forward"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


_declarers = [_declare]


def on_load(declare):
    """Registers declare(lib), run when the library loads (at once if it already has):
    modules set their functions' signatures without loading the library at import."""
    _declarers.append(declare)
    if _LazyLibrary._loaded is not None:
        declare(_LazyLibrary._loaded)
    return declare


class _LazyLibrary:
    """Loads libliverseg on first use, so model files can be written without it."""

    _loaded = None

    def __getattr__(self, name):
        if _LazyLibrary._loaded is None:
            loaded = _load()
            for declare in _declarers:
                declare(loaded)
            _LazyLibrary._loaded = loaded
        return getattr(_LazyLibrary._loaded, name)


lib = _LazyLibrary()


class ProgressRelay:
    """Wraps a Python progress(fraction, stage) → cancel? function as a C callback. An
    exception in it cancels the call and is re-raised by finish(status) instead of
    unwinding through C."""

    def __init__(self, progress):
        self.error = None
        self.callback = PROGRESS_CALLBACK() if progress is None else PROGRESS_CALLBACK(self._relay(progress))

    def _relay(self, progress):
        def relay(fraction, stage, _user):
            try:
                return 1 if progress(fraction, stage) else 0
            except BaseException as e:
                self.error = e
                return 1
        return relay

    def finish(self, status):
        """Re-raises the callback's exception, else checks the status."""
        if self.error is not None:
            raise self.error
        check(status)


def check(status):
    """Raises Error with the library's message unless status is OK."""
    if status != OK:
        raise Error(status, lib.liverseg_last_error().decode("utf-8", "replace"))
