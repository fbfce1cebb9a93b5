"""nibabel and SimpleITK images to [x, y, z] arrays with a voxel->RAS affine, and masks
back to images of the caller's kind on the caller's grid. Neither library is imported
unless such an image is passed."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np


def _is_sitk(image: Any) -> bool:
    return hasattr(image, "GetDirection") and hasattr(image, "GetOrigin")


def _is_nibabel(image: Any) -> bool:
    return hasattr(image, "dataobj") and hasattr(image, "affine")


def to_array(image: Any) -> Tuple[np.ndarray, np.ndarray]:
    """(array indexed [x, y, z] in stored units with any scaling applied, 4x4 voxel->RAS
    affine) of a 3-D nibabel or SimpleITK image."""
    if _is_sitk(image):
        import SimpleITK as sitk
        from . import affine_from_sitk
        if image.GetDimension() != 3:
            raise ValueError(f"a CT volume must be 3-D, got a {image.GetDimension()}-D SimpleITK image")
        # ITK's arrays are [z, y, x]: transposing gives the [x, y, z] order the affine describes.
        return sitk.GetArrayViewFromImage(image).T, affine_from_sitk(image)
    if _is_nibabel(image):
        # dataobj applies the NIfTI scl_slope/scl_inter (a uint16 file with a -1024 intercept
        # gives HU) and keeps the stored dtype when there is no scaling.
        return np.asanyarray(image.dataobj), np.asarray(image.affine, dtype=np.float64)
    raise TypeError(f"expected a nibabel or SimpleITK image, got {type(image).__name__}")


def like_image(image: Any, array: np.ndarray) -> Any:
    """`array` ([x, y, z], on `image`'s grid) as an image of `image`'s kind and geometry:
    a SimpleITK image with its origin, spacing and direction, or a NIfTI image (the same
    NIfTI class for NIfTI inputs, Nifti1Image otherwise) with its affine and codes."""
    if _is_sitk(image):
        import SimpleITK as sitk
        out = sitk.GetImageFromArray(np.ascontiguousarray(array.T))
        out.CopyInformation(image)
        return out
    import nibabel as nib
    cls = type(image) if isinstance(image, nib.Nifti1Image) else nib.Nifti1Image
    out = cls(array, image.affine)
    if isinstance(image, nib.Nifti1Image):
        out.header.set_xyzt_units(*image.header.get_xyzt_units())
        out.set_qform(image.affine, code=int(image.header["qform_code"]))
        out.set_sform(image.affine, code=int(image.header["sform_code"]))
    return out
