"""Reading and writing NIfTI-1, NRRD and MetaImage files through libliverseg's readers.

    array, geometry = liverseg.read_image("ct.nii.gz")     # HU, indexed [x, y, z]
    liverseg.write_image("mask.nrrd", mask, geometry)       # same grid, any supported format

The format follows the extension: .nii, .nii.gz, .nrrd, .nhdr (+ .raw.gz), .mha,
.mhd (+ .raw); a folder or a DICOM file is read as a DICOM series (liverseg.dicom). Geometry round-trips exactly: the affine read is the affine written.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from typing import Tuple, Union

import numpy as np

from . import _lib
from ._lib import lib, check


class ImageInfo(ctypes.Structure):
    """ctypes mirror of liverseg_image_info."""
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("voxel_type_0_1", ctypes.c_int),
        ("dims", ctypes.c_size_t * 3),
        ("spacing", ctypes.c_double * 3),
        ("ijk_to_ras", ctypes.c_double * 16),
        ("scl_slope", ctypes.c_double),
        ("scl_inter", ctypes.c_double),
        ("dtype", ctypes.c_int),  # liverseg_dtype
    ]


@_lib.on_load
def _declare(lib):
    lib.liverseg_image_read.argtypes = [ctypes.c_char_p, ctypes.POINTER(ImageInfo), ctypes.POINTER(ctypes.c_void_p)]
    lib.liverseg_image_read.restype = ctypes.c_int
    lib.liverseg_image_write.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ImageInfo)]
    lib.liverseg_image_write.restype = ctypes.c_int
    lib.liverseg_free.argtypes = [ctypes.c_void_p]
    lib.liverseg_free.restype = None


@dataclass(frozen=True, eq=False)
class Geometry:
    """Where an image's voxels lie: the 4x4 voxel-index -> RAS mm affine (nibabel's
    img.affine convention) and NIfTI's intensity scaling (value * scl_slope + scl_inter)."""
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    scl_slope: float = 1.0
    scl_inter: float = 0.0

    def __eq__(self, other):
        return (isinstance(other, Geometry) and np.array_equal(self.affine, other.affine)
                and (self.scl_slope, self.scl_inter) == (other.scl_slope, other.scl_inter))

    __hash__ = None

    @property
    def spacing(self):
        """Voxel size in mm along x, y, z: the column norms of the affine."""
        return np.linalg.norm(np.asarray(self.affine, dtype=np.float64)[:3, :3], axis=0)


def read_image(path: Union[str, "os.PathLike[str]"], scaled: bool = True) -> Tuple[np.ndarray, Geometry]:
    """Reads an image file. Returns (array, geometry), the voxels indexed [x, y, z].

    By default the values are intensities (HU for CT): NIfTI's scl_slope and scl_inter are
    applied, so a uint16 CT stored with a -1024 intercept comes back in HU; the array keeps
    its stored dtype when the scaling is the identity and is float64 otherwise, and the
    geometry has no scaling. scaled=False gives the stored values in their stored dtype
    with the scaling in the geometry (write_image(path, array, geometry) then round-trips
    the file exactly). A folder or a DICOM file is read as a DICOM series (read_dicom, which
    needs pydicom). Raises liverseg.Error naming the bad field."""
    from .dicom import is_dicom_file, read_dicom
    if os.path.isdir(path) or is_dicom_file(path):
        if not scaled:
            raise ValueError("a DICOM series is read in HU only (its slices may each have their own rescale)")
        return read_dicom(path)
    info = ImageInfo()
    info.struct_size = ctypes.sizeof(ImageInfo)
    data = ctypes.c_void_p()
    check(lib.liverseg_image_read(str(path).encode(), ctypes.byref(info), ctypes.byref(data)))
    try:
        dtype = _lib.NUMPY_DTYPES[info.dtype]
        count = info.dims[0] * info.dims[1] * info.dims[2]
        raw = ctypes.string_at(data.value, count * dtype.itemsize)
    finally:
        lib.liverseg_free(data)
    array = np.frombuffer(raw, dtype=dtype).reshape(tuple(info.dims), order="F").copy(order="F")
    affine = np.array(info.ijk_to_ras, dtype=np.float64).reshape(4, 4)
    if not scaled:
        return array, Geometry(affine, info.scl_slope, info.scl_inter)
    if (info.scl_slope, info.scl_inter) != (1, 0):
        array = array * info.scl_slope + info.scl_inter
    return array, Geometry(affine)


def write_image(path: Union[str, "os.PathLike[str]"], array: np.ndarray, geometry: Union[Geometry, np.ndarray]) -> None:
    """Writes a 3-D array indexed [x, y, z] to an image file with `geometry` (a Geometry or
    a 4x4 affine). Booleans are written as uint8; other dtypes must be 8- to 64-bit
    integers or float32/float64. The write is atomic."""
    if not isinstance(geometry, Geometry):
        geometry = Geometry(np.asarray(geometry, dtype=np.float64))
    a = np.asarray(array)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.ndim != 3:
        raise ValueError(f"write_image takes a 3-D [x, y, z] array, got shape {a.shape}")
    a = np.asfortranarray(a.astype(a.dtype.newbyteorder("="), copy=False))
    if a.dtype not in _lib.DTYPES:
        raise ValueError(f"dtype {a.dtype} cannot be written; use an 8- to 64-bit integer or float32/float64")
    affine = np.asarray(geometry.affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"the affine must be 4x4, got {affine.shape}")
    info = ImageInfo()
    info.struct_size = ctypes.sizeof(ImageInfo)
    info.dtype = _lib.DTYPES[a.dtype]
    info.dims[:] = a.shape
    info.ijk_to_ras[:] = [float(v) for v in affine.reshape(-1)]
    info.scl_slope = geometry.scl_slope
    info.scl_inter = geometry.scl_inter
    check(lib.liverseg_image_write(str(path).encode(), a.ctypes.data, ctypes.byref(info)))
