"""liverseg: liver segmentation in CT with the 3D deeply supervised network.

    import liverseg
    model = liverseg.Model()                            # the bundled default model
    ct, geometry = liverseg.read_image("ct.nii.gz")     # HU, indexed [x, y, z]
    mask = model.segment(ct, affine=geometry.affine)
    liverseg.write_image("liver.nii.gz", mask, geometry.affine)

    liver = model.segment_image(nib.load("ct.nii.gz"))  # nibabel or SimpleITK in, same kind out

Arrays are indexed [x, y, z] as nibabel gives them. From SimpleITK, pass
`sitk.GetArrayFromImage(image).T` with `affine=liverseg.affine_from_sitk(image)`, or
use Model.segment_image, which does both.
"""
from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from ._lib import Error, lib, check
from . import _lib
from .model_file import save_model, save_ensemble, paper_architecture, parameter_shapes, random_weights
from .imageio import Geometry, read_image, write_image
from .dicom import read_dicom
from .metrics import evaluate
from .statistics import liver_statistics

__all__ = ["Model", "Error", "default_model_path", "save_model", "save_ensemble", "paper_architecture", "parameter_shapes", "random_weights",
           "version", "affine_from_sitk", "set_log_callback", "Geometry", "read_image", "write_image", "read_dicom", "evaluate",
           "liver_statistics"]


def version() -> str:
    """The library's version string."""
    return lib.liverseg_version().decode()


def _as_volume_array(array):
    """A Fortran-ordered (x fastest), native-byte-order array of a dtype the library takes
    (every 8- to 64-bit integer, float32, float64; others become float32)."""
    a = np.asarray(array)
    if a.ndim != 3:
        raise ValueError(f"a CT volume must be 3-D [x, y, z], got shape {a.shape}")
    a = a.astype(a.dtype.newbyteorder("="), copy=False)
    if a.dtype not in _lib.DTYPES:
        a = a.astype(np.float32)
    return np.asfortranarray(a)


def _spacing_and_matrix(shape, spacing, affine):
    matrix = None
    if affine is not None:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        matrix = np.ascontiguousarray(affine)
        if spacing is None:
            spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if spacing is None:
        raise ValueError("give spacing (mm) or an affine")
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3:
        raise ValueError(f"spacing needs 3 values, got {spacing}")
    return spacing, matrix


def _volume_struct(a, spacing, matrix):
    v = _lib.Volume()
    v.data = a.ctypes.data
    v.dtype = _lib.DTYPES[a.dtype]
    v.dims[:] = a.shape
    v.spacing[:] = spacing
    v.ijk_to_ras = None if matrix is None else matrix.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    return v


def affine_from_sitk(image) -> np.ndarray:
    """The voxel→RAS affine of a SimpleITK image (ITK stores LPS), for arrays taken as
    `sitk.GetArrayFromImage(image).T`."""
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing(), dtype=np.float64)[None, :]
    affine[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def default_model_path() -> Path:
    """The model used when none is named: $LIVERSEG_MODEL, else liver-default.safetensors
    in the installed package, else in a source checkout's models/ folder."""
    if os.environ.get("LIVERSEG_MODEL"):
        return Path(os.environ["LIVERSEG_MODEL"])
    here = Path(__file__).resolve().parent
    candidates = [here / "models" / "liver-default.safetensors", here.parents[2] / "models" / "liver-default.safetensors"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError("no default model: set LIVERSEG_MODEL or pass a path (looked at "
                            + ", ".join(map(str, candidates)) + ")")


PathLike = Union[str, "os.PathLike[str]"]


class Model:
    """A loaded model. Immutable; one Model may segment from several threads at once.

    Model() loads the default model (default_model_path), Model(path) a model file,
    Model(data=bytes) one held in memory. A Model pickles as its path (an absolute path,
    reread on unpickling) or its bytes, so multiprocessing and Dask can ship it."""

    def __init__(self, path: Optional[PathLike] = None, data: Optional[bytes] = None):
        self._handle = ctypes.c_void_p()
        handle = ctypes.c_void_p()
        if data is not None:
            self._source = (None, bytes(data))
            check(lib.liverseg_model_load_memory(self._source[1], len(self._source[1]), ctypes.byref(handle)))
        else:
            self._source = (os.path.abspath(default_model_path() if path is None else path), None)
            check(lib.liverseg_model_load_file(self._source[0].encode(), ctypes.byref(handle)))
        self._handle = handle

    def __reduce__(self):
        return Model, self._source

    @property
    def path(self) -> Optional[str]:
        """The model file's absolute path (None for a model loaded from bytes)."""
        return self._source[0]

    def close(self):
        """Frees the model now (otherwise when garbage-collected)."""
        if self._handle:
            lib.liverseg_model_free(self._handle)
            self._handle = ctypes.c_void_p()

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def info(self) -> dict:
        """The model's description as a dict (liverseg_model_info): the first network's
        architecture, grid and intensity conventions, and how many networks the model has
        (an ensemble's are all in metadata["networks"])."""
        info = _lib.ModelInfo()
        info.struct_size = ctypes.sizeof(_lib.ModelInfo)
        check(lib.liverseg_model_get_info(self._handle, ctypes.byref(info)))
        return {
            "format_version": info.format_version,
            "conv_channels": list(info.conv_channels),
            "conv_kernels": [list(k) for k in info.conv_kernel],
            "main_deconv_channels": info.main_deconv_channels,
            "branch2_deconv_channels": info.branch2_deconv_channels,
            "classes": info.n_classes,
            "spacing": list(info.spacing),
            "orientation": info.orientation.decode(),
            "hu_window": list(info.hu_window),
            "mean": info.intensity_mean,
            "std": info.intensity_std,
            "fusion_tau": list(info.fusion_tau),
            "n_parameters": info.n_parameters,
            "n_networks": info.n_networks,
        }

    @property
    def metadata(self) -> dict:
        """The model file's "liverseg" metadata document, parsed."""
        return json.loads(lib.liverseg_model_metadata_json(self._handle).decode())

    def segment(self, array: np.ndarray, spacing: Optional[Sequence[float]] = None, affine: Optional[np.ndarray] = None,
                return_probability: bool = False, threads: int = 0, max_tile_voxels: int = 0, threshold: float = 0.5,
                progress: Optional[Callable[[float, int], Any]] = None, crf: Optional[bool] = None,
                crf_params: Optional[dict] = None, postprocess: Union[bool, str, Iterable[str]] = True):
        """Segments a CT volume indexed [x, y, z] (HU). Returns the uint8 mask (0/1), or
        (mask, probability) with return_probability. `affine` is the voxel→RAS 4×4
        matrix (nibabel's img.affine); without it the array's axes must already follow
        the model's orientation. `progress(fraction, stage)` may return True to cancel.
        The mask comes from the dense CRF, with the model file's CRF parameters or
        `crf_params` (a dict of refine_crf's keyword parameters), unless crf=False, which
        thresholds the probability at `threshold` instead; None keeps the library's default
        (the CRF on). `postprocess`: True
        (largest component, 3D and per-slice hole filling: the default), False (the raw
        thresholded or CRF mask), or a collection of step names from
        "largest_component", "fill_holes_3d", "fill_holes_slices"."""
        a = _as_volume_array(array)
        spacing, matrix = _spacing_and_matrix(a.shape, spacing, affine)
        volume = _volume_struct(a, spacing, matrix)
        params = _lib.segment_params()
        params.n_threads = threads
        params.postprocess = _postprocess_bits(postprocess)
        params.max_tile_voxels = max_tile_voxels
        params.threshold = threshold
        if crf is not None:
            params.crf = int(bool(crf))
        if crf_params is not None:
            from .crf import crf_params_struct
            crf_struct = crf_params_struct(crf_params, threads)  # kept alive until the call returns
            params.crf_params = ctypes.addressof(crf_struct)
        relay = _lib.ProgressRelay(progress)
        params.progress = relay.callback
        mask = np.empty(a.shape, dtype=np.uint8, order="F")
        probability = np.empty(a.shape, dtype=np.float32, order="F") if return_probability else None
        relay.finish(lib.liverseg_segment(self._handle, ctypes.byref(volume), ctypes.byref(params),
                                          mask.ctypes.data, None if probability is None else probability.ctypes.data))
        return (mask, probability) if return_probability else mask

    def segment_image(self, image, return_probability: bool = False, **options):
        """Segments a nibabel or SimpleITK image and returns the mask (uint8 0/1) as an
        image of the same kind on the same grid: a nibabel Nifti1Image with the input's
        affine, or a SimpleITK image with its origin, spacing and direction (ITK's arrays
        are [z, y, x]; this takes care of the transposition). With return_probability,
        (mask image, probability image). `options` are segment's keyword arguments."""
        from .images import to_array, like_image
        array, affine = to_array(image)
        result = self.segment(array, affine=affine, return_probability=return_probability, **options)
        if return_probability:
            return like_image(image, result[0]), like_image(image, result[1])
        return like_image(image, result)

    def preprocess(self, array, spacing=None, affine=None, threads=0):
        """The network input for a CT volume: reoriented, resampled onto the model grid,
        clipped and normalised, as a float32 [x, y, z] array (before padding)."""
        a = _as_volume_array(array)
        spacing, matrix = _spacing_and_matrix(a.shape, spacing, affine)
        volume = _volume_struct(a, spacing, matrix)
        dims = (ctypes.c_size_t * 3)()
        check(lib.liverseg_model_grid_dims(self._handle, ctypes.byref(volume), dims))
        out = np.empty(tuple(dims), dtype=np.float32, order="F")
        check(lib.liverseg_preprocess(self._handle, ctypes.byref(volume), threads, out.ctypes.data, out.size))
        return out

    def loss_and_gradient(self, volume, labels, eta=(0.3, 0.4), threads=0):
        """Eq. 3's data term for a normalised [x, y, z] input (extents multiples of 4) and
        0/1 labels of the same shape: returns ({"total", "main", "branch1", "branch2"},
        {tensor name: gradient array shaped like the model file's tensor}). An ensemble's
        first network, as preprocess and forward."""
        a = np.asfortranarray(volume, dtype=np.float32)
        y = np.asfortranarray(labels, dtype=np.uint8)
        if a.ndim != 3 or y.shape != a.shape:
            raise ValueError(f"volume {a.shape} and labels {y.shape} must be 3-D and equal")
        document = self.metadata
        arch = (document["networks"][0] if "networks" in document else document)["architecture"]  # the first network
        shapes = parameter_shapes(arch)
        flat = np.empty(sum(int(np.prod(s)) for _, s in shapes), dtype=np.float32)
        losses = (ctypes.c_double * 4)()
        dims = (ctypes.c_size_t * 3)(*a.shape)
        check(lib.liverseg_network_loss_gradient(self._handle, a.ctypes.data, dims, y.ctypes.data, eta[0], eta[1],
                                                 threads, losses, flat.ctypes.data))
        gradients, offset = {}, 0
        for name, shape in shapes:
            n = int(np.prod(shape))
            gradients[name] = flat[offset:offset + n].reshape(shape)
            offset += n
        return dict(zip(("total", "main", "branch1", "branch2"), losses)), gradients

    def forward(self, volume, threads=0):
        """Runs the network alone on a normalised model-grid volume [x, y, z] whose extents
        are multiples of 4. Returns the liver probability (main, branch1, branch2)."""
        a = np.asfortranarray(volume, dtype=np.float32)
        if a.ndim != 3:
            raise ValueError("forward takes a 3-D [x, y, z] array")
        outs = [np.empty(a.shape, dtype=np.float32, order="F") for _ in range(3)]
        dims = (ctypes.c_size_t * 3)(*a.shape)
        check(lib.liverseg_network_forward(self._handle, a.ctypes.data, dims, threads,
                                           *[o.ctypes.data for o in outs]))
        return tuple(outs)


_log_callback_ref = None


def set_log_callback(callback, level=1):
    """Routes library log messages to callback(level, message); None turns logging off.
    Levels: 0 debug, 1 info, 2 warning, 3 error."""
    global _log_callback_ref
    if callback is None:
        _log_callback_ref = None
        lib.liverseg_set_log_callback(_lib.LOG_CALLBACK(), level, None)
        return
    _log_callback_ref = _lib.LOG_CALLBACK(lambda lvl, msg, _u: callback(lvl, msg.decode("utf-8", "replace")))
    lib.liverseg_set_log_callback(_log_callback_ref, level, None)


def _postprocess_bits(postprocess):
    """The liverseg_postprocess bit set for segment's `postprocess` argument."""
    if postprocess is True:
        return _lib.POSTPROCESS_ALL
    if postprocess is False or postprocess is None:
        return 0
    if isinstance(postprocess, str):
        postprocess = [postprocess]
    bits = 0
    for name in postprocess:
        if name not in _lib.POSTPROCESS:
            raise ValueError(f"unknown post-processing step {name!r}; known: {', '.join(_lib.POSTPROCESS)}")
        bits |= _lib.POSTPROCESS[name]
    return bits


from .crf import refine_crf, crf_default_params  # noqa: E402

__all__ += ["refine_crf", "crf_default_params"]
