"""The fully connected CRF of the paper's §2.3 through liverseg_refine_crf.

    import nibabel as nib, liverseg
    img = nib.load("ct.nii.gz")
    mask = liverseg.refine_crf(img.get_fdata(dtype="float32"), probability, affine=img.affine)

Arrays are indexed [x, y, z] as nibabel gives them; `probability` is the liver
probability on the CT's grid (e.g. Model.segment(..., return_probability=True)[1]).
"""
import ctypes

import numpy as np

from ._lib import lib
from . import _lib

# liverseg_crf_mode and liverseg_crf_normalisation
MODES = {"slice2d": 0, "volume3d": 1}
NORMALISATIONS = {"symmetric": 0, "after": 1}


class CRFParams(ctypes.Structure):
    """ctypes mirror of liverseg_crf_params."""
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("mode", ctypes.c_int),
        ("n_iterations", ctypes.c_int),
        ("mu1", ctypes.c_double),
        ("mu2", ctypes.c_double),
        ("theta_alpha_mm", ctypes.c_double),
        ("theta_beta_hu", ctypes.c_double),
        ("theta_gamma_mm", ctypes.c_double),
        ("normalisation", ctypes.c_int),
        ("uncertain_only", ctypes.c_int),
        ("uncertain_probability", ctypes.c_double),
        ("uncertain_margin_mm", ctypes.c_double),
        ("n_threads", ctypes.c_int),
        ("progress", _lib.PROGRESS_CALLBACK),
        ("progress_user_data", ctypes.c_void_p),
    ]


_PARAM_NAMES = ("mode", "n_iterations", "mu1", "mu2", "theta_alpha_mm", "theta_beta_hu", "theta_gamma_mm",
                "normalisation", "uncertain_only", "uncertain_probability", "uncertain_margin_mm")
_declared = False


def _declare():
    global _declared
    if not _declared:
        lib.liverseg_crf_params_init.restype = ctypes.c_int
        lib.liverseg_crf_params_init.argtypes = [ctypes.POINTER(CRFParams), ctypes.c_size_t]
        lib.liverseg_refine_crf.restype = ctypes.c_int
        lib.liverseg_refine_crf.argtypes = [ctypes.POINTER(_lib.Volume), ctypes.c_void_p, ctypes.POINTER(CRFParams),
                                            ctypes.c_void_p]
        _declared = True


def _name(table, value):
    return next((k for k, v in table.items() if v == value), value)


def _defaults():
    """A liverseg_crf_params holding the library's defaults (liverseg_crf_params_init)."""
    _declare()
    p = CRFParams()
    _lib.check(lib.liverseg_crf_params_init(ctypes.byref(p), ctypes.sizeof(p)))
    return p


def crf_default_params():
    """The library's default CRF parameters as a dict (keyword names of refine_crf)."""
    p = _defaults()
    params = {name: getattr(p, name) for name in _PARAM_NAMES}
    params["mode"] = _name(MODES, p.mode)
    params["normalisation"] = _name(NORMALISATIONS, p.normalisation)
    params["uncertain_only"] = bool(p.uncertain_only)
    return params


def crf_params_struct(params, threads=0):
    """A liverseg_crf_params from the defaults and a dict of refine_crf's keyword parameters."""
    p = _defaults()
    for key, value in params.items():
        if key not in _PARAM_NAMES:
            raise TypeError(f"unknown CRF parameter {key!r}; known: {', '.join(_PARAM_NAMES)}")
        if key == "mode":
            value = MODES.get(value, value)
        elif key == "normalisation":
            value = NORMALISATIONS.get(value, value)
        elif key == "uncertain_only":
            value = int(bool(value))
        setattr(p, key, value)
    p.n_threads = threads
    return p


def refine_crf(ct, probability, spacing=None, affine=None, threads=0, progress=None, **params):
    """Refines a liver probability into a uint8 mask (0/1, [x, y, z]) with the CRF.

    ct: CT in HU, [x, y, z]. probability: floats in [0, 1], same shape. spacing (mm) or
    affine (voxel→RAS 4×4, nibabel's img.affine; it also picks the transverse axis) is
    required. params: any of crf_default_params()'s keys — mode ("slice2d"/"volume3d"),
    n_iterations, mu1, mu2, theta_alpha_mm, theta_beta_hu, theta_gamma_mm, normalisation
    ("symmetric"/"after"), uncertain_only, uncertain_probability, uncertain_margin_mm.
    progress(fraction, stage) may return True to cancel (liverseg.Error, CANCELLED).
    Raises liverseg.Error (status INVALID_ARGUMENT naming the parameter) on bad input.
    """
    from . import _as_volume_array, _spacing_and_matrix, _volume_struct
    _declare()
    a = _as_volume_array(ct)
    prob = np.asfortranarray(probability, dtype=np.float32)
    if prob.shape != a.shape:
        raise ValueError(f"probability has shape {prob.shape} but the CT has {a.shape}")
    spacing, matrix = _spacing_and_matrix(a.shape, spacing, affine)
    volume = _volume_struct(a, spacing, matrix)
    p = crf_params_struct(params, threads)
    relay = _lib.ProgressRelay(progress)
    p.progress = relay.callback
    mask = np.empty(a.shape, dtype=np.uint8, order="F")
    relay.finish(lib.liverseg_refine_crf(ctypes.byref(volume), prob.ctypes.data, ctypes.byref(p), mask.ctypes.data))
    return mask
