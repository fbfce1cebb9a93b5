"""DICOM CT series to one volume, with pydicom (pip install "liverseg[dicom]": pydicom,
and pylibjpeg with its OpenJPEG plug-in for JPEG 2000 and JPEG-LS/JPEG lossless data).

    ct, geometry = liverseg.read_dicom("series_folder/")    # HU, [x, y, z], RAS affine

Slices are ordered by their position along the slice normal (not by file name or
InstanceNumber), each slice's RescaleSlope/RescaleIntercept is applied, and the affine
follows ImageOrientationPatient, PixelSpacing and the slice positions (LPS turned to RAS).
Gantry tilt is not corrected: a series whose slices do not stack along their normal is
refused, as are missing or duplicate slices.
"""
from __future__ import annotations

import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .imageio import Geometry

PathLike = Union[str, "os.PathLike[str]"]


def is_dicom_file(path: PathLike) -> bool:
    """Whether `path` is a DICOM Part 10 file (the "DICM" marker after the 128-byte preamble).
    Only regular files are opened: reading a FIFO or a device could block."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _headers(files: List[Path]) -> Dict[str, list]:
    """{SeriesInstanceUID: [header, ...]} of the image files among `files`."""
    import pydicom
    series = defaultdict(list)
    for path in files:
        if not is_dicom_file(path):
            continue
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if "ImagePositionPatient" in header and "ImageOrientationPatient" in header:
            header.filename = str(path)
            series[str(header.get("SeriesInstanceUID", ""))].append(header)
    return series


def _is_axial_ct(headers: list) -> bool:
    first = headers[0]
    row, col = np.asarray(first.ImageOrientationPatient, dtype=np.float64).reshape(2, 3)
    return first.get("Modality") == "CT" and abs(np.cross(row, col)[2]) > 0.9


def read_dicom(path: PathLike, series: Optional[str] = None) -> Tuple[np.ndarray, Geometry]:
    """Reads a DICOM series as (array indexed [x, y, z] in HU, Geometry with the RAS affine).

    `path` is a folder (searched recursively) or one file of the series (then that file's
    series is read). In a folder holding several series, `series` names one by its
    SeriesInstanceUID; without it the axial CT series with the most slices is read, with a
    warning naming the choice. The array is int16 when every slice's rescale is integral
    and the values fit, else int32 or float64."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        files = sorted(p for p in path.parent.iterdir() if p.is_file())
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    found = _headers(files)
    if not found:
        raise ValueError(f"{path}: no DICOM images")
    if path.is_file():
        import pydicom
        series = str(pydicom.dcmread(path, stop_before_pixels=True).get("SeriesInstanceUID", ""))
    if series is not None:
        if series not in found:
            raise ValueError(f"{path}: no series {series!r}; there are {', '.join(map(repr, found))}")
        chosen = series
    else:
        candidates = {uid: headers for uid, headers in found.items() if _is_axial_ct(headers)} or found
        chosen = max(candidates, key=lambda uid: len(candidates[uid]))
        if len(found) > 1:
            warnings.warn(f"{path}: {len(found)} series; reading {chosen!r} ({len(found[chosen])} slices, the largest "
                          f"axial CT series). Others: {', '.join(repr(u) for u in found if u != chosen)}", stacklevel=2)
    return _volume(found[chosen], f"{path} series {chosen!r}")


def _volume(headers: list, name: str) -> Tuple[np.ndarray, Geometry]:
    import pydicom
    first = headers[0]
    row, col = np.asarray(first.ImageOrientationPatient, dtype=np.float64).reshape(2, 3)
    normal = np.cross(row, col)
    for h in headers:
        if not np.allclose(np.asarray(h.ImageOrientationPatient, dtype=np.float64), first.ImageOrientationPatient, atol=1e-4) \
                or (h.Rows, h.Columns) != (first.Rows, first.Columns):
            raise ValueError(f"{name}: slices differ in orientation or size ({h.filename})")
    headers = sorted(headers, key=lambda h: float(np.dot(np.asarray(h.ImagePositionPatient, dtype=np.float64), normal)))
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=np.float64)
    if len(headers) > 1:
        steps = np.diff(positions @ normal)
        step = (positions[-1] - positions[0]) @ normal / (len(headers) - 1)
        if step <= 0 or np.max(np.abs(steps - step)) > 0.01 * step:
            raise ValueError(f"{name}: slices are not evenly spaced (gaps {np.round(steps, 3).tolist()} mm): "
                             "a missing or duplicate slice?")
        offsets = positions - positions[0] - np.outer((positions - positions[0]) @ normal, normal)
        if np.max(np.abs(offsets)) > 0.01 * step * len(headers):
            raise ValueError(f"{name}: slices do not stack along their normal (gantry tilt is not corrected)")
    else:
        step = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1)))
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    # Column i runs along the row direction (spacing between columns: PixelSpacing[1]).
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * col_spacing, col * row_spacing, normal * step, positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps

    rescale = [(float(h.get("RescaleSlope", 1)), float(h.get("RescaleIntercept", 0))) for h in headers]
    volume = np.empty((first.Columns, first.Rows, len(headers)), dtype=np.float64, order="F")
    for k, (h, (slope, intercept)) in enumerate(zip(headers, rescale)):
        pixels = pydicom.dcmread(h.filename).pixel_array   # [row, column] = [y, x]
        volume[:, :, k] = pixels.T * slope + intercept
    if all(s.is_integer() and i.is_integer() for s, i in rescale):
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= volume.min() and volume.max() <= info.max:
                return np.asfortranarray(volume.astype(dtype)), Geometry(affine)
    return volume, Geometry(affine)
