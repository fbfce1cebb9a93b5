"""DICOM series (pydicom, JPEG 2000 lossless through pylibjpeg-openjpeg): the 20-slice
TotalSegmentator series read as a volume equals its NIfTI conversion voxel for voxel with
the same affine, and SimpleITK's series reader; slice order comes from the positions,
several series are told apart, broken series are refused."""
import shutil
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import liverseg
from conftest import require_data

SERIES = "totalseg-example/dicom-20slices"


@pytest.fixture(scope="module")
def reference():
    img = nib.load(require_data("totalseg-example/ct-20slices.nii.gz"))
    return np.asanyarray(img.dataobj), img.affine


def test_series_equals_the_nifti_and_simpleitk(reference):
    folder = require_data(SERIES)
    ct, geometry = liverseg.read_dicom(folder)
    assert ct.dtype == np.int16 and np.array_equal(ct, reference[0])
    np.testing.assert_allclose(geometry.affine, reference[1], rtol=0, atol=1e-9)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(image).T, ct)
    np.testing.assert_allclose(liverseg.affine_from_sitk(image), geometry.affine, rtol=0, atol=1e-6)
    # One file of the series, and read_image on the folder, give the same volume.
    one_file = sorted(folder.iterdir())[7]
    for array, g in (liverseg.read_dicom(one_file), liverseg.read_image(folder), liverseg.read_image(one_file)):
        assert np.array_equal(array, ct) and np.array_equal(g.affine, geometry.affine)


@pytest.fixture
def two_series(tmp_path):
    """The series under a UID with files named against position order, and 5 of its slices
    as a second series."""
    files = sorted(require_data(SERIES).iterdir())
    for n, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = "1.2.3.20"
        ds.save_as(tmp_path / f"{len(files) - n:03d}.dcm")
        if n < 5:
            ds.SeriesInstanceUID = "1.2.3.5"
            (tmp_path / "other").mkdir(exist_ok=True)
            ds.save_as(tmp_path / "other" / f"{n}.dcm")
    (tmp_path / "README.txt").write_text("not DICOM")
    return tmp_path


def test_several_series_largest_by_default_or_by_uid(two_series, reference):
    with pytest.warns(UserWarning, match=r"2 series; reading '1\.2\.3\.20' \(20 slices"):
        ct, geometry = liverseg.read_dicom(two_series)
    assert np.array_equal(ct, reference[0]) and np.allclose(geometry.affine, reference[1], atol=1e-9)
    # The first five files by name are the five top slices (the series' files run head to foot).
    small, small_geometry = liverseg.read_dicom(two_series, series="1.2.3.5")
    assert np.array_equal(small, reference[0][:, :, 15:])
    shifted = reference[1].copy()
    shifted[:3, 3] += 15 * reference[1][:3, 2]
    np.testing.assert_allclose(small_geometry.affine, shifted, rtol=0, atol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a file names its series: no choice to announce
        assert np.array_equal(liverseg.read_dicom(two_series / "other" / "3.dcm")[0], small)
    with pytest.raises(ValueError, match="no series '9.9'"):
        liverseg.read_dicom(two_series, series="9.9")


def test_broken_series_are_refused(two_series, tmp_path):
    shutil.rmtree(two_series / "other")
    (two_series / "010.dcm").unlink()
    with pytest.raises(ValueError, match="not evenly spaced"):
        liverseg.read_dicom(two_series)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no DICOM images"):
        liverseg.read_dicom(empty)
    with pytest.raises(ValueError, match="HU only"):
        liverseg.read_image(require_data(SERIES), scaled=False)
