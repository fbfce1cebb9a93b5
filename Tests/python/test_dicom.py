"""DICOM series (pydicom, JPEG 2000 lossless through pylibjpeg-openjpeg): the 20-slice
TotalSegmentator series read as a volume equals its NIfTI conversion voxel for voxel with
the same affine, and SimpleITK's series reader; slice order comes from the positions,
several series are told apart, broken series are refused. The same for the `liverseg`
command (GDCM): `info` and `segment` on the series give what they give on the NIfTI."""
import gzip
import json
import os
import shutil
import warnings
from pathlib import Path

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


# The `liverseg` command reads DICOM series with GDCM (LiversegDICOM), by the same rules.

def cli_info(*args):
    """(`liverseg info --json` fields, stderr) of a successful run."""
    from test_cli import run
    result = run("info", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def unzipped(path):
    return gzip.decompress(Path(path).read_bytes())


@pytest.fixture(scope="module")
def nifti_fields():
    return cli_info(require_data("totalseg-example/ct-20slices.nii.gz"))[0]


def assert_same_volume(fields, nifti_fields):
    """The fields `liverseg info` derives from the voxels and geometry are those of the NIfTI."""
    for key, value in nifti_fields.items():
        if key not in ("file", "format"):
            assert fields[key] == value, key


def test_cli_reads_the_series_as_its_nifti_conversion(tmp_path, nifti_fields):
    folder = require_data(SERIES)
    fields, stderr = cli_info(folder)
    assert stderr == ""   # one series: no choice to announce
    assert (fields["format"], fields["modality"], fields["series_description"]) == ("dicom", "CT", "CT Body 3.0")
    assert fields["dtype"] == "int16" and fields["size"] == [512, 512, 20] and fields["orientation"] == "LPS"
    assert_same_volume(fields, nifti_fields)
    # File names that say nothing about the order, one folder deeper; one file of the series.
    files = sorted(folder.iterdir())
    shuffled = tmp_path / "shuffled"
    (shuffled / "deeper").mkdir(parents=True)
    for n, k in enumerate(np.random.default_rng(3).permutation(len(files))):
        shutil.copyfile(files[k], shuffled / "deeper" / f"IM{n:04d}")
    assert_same_volume(cli_info(shuffled)[0], nifti_fields)
    (tmp_path / "link").symlink_to(shuffled, target_is_directory=True)   # a link to the folder is followed
    assert_same_volume(cli_info(tmp_path / "link")[0], nifti_fields)
    assert_same_volume(cli_info(shuffled / "deeper" / "IM0007")[0], nifti_fields)


def test_cli_segments_the_series_as_its_nifti_conversion(tmp_path, small_model_path):
    """Masks and probabilities from the series and from the NIfTI are the same files, header
    (sform, qform) and voxels, in a batch and one case at a time."""
    from test_cli import run
    folder, nifti = require_data(SERIES), require_data("totalseg-example/ct-20slices.nii.gz")
    cases = tmp_path / "cases"
    shutil.copytree(folder, cases / "patient 7")
    shutil.copyfile(nifti, cases / "ct.nii.gz")
    (cases / "notes.txt").write_text("neither an image nor DICOM")
    out = cases / "masks"   # inside the input folder: not a case
    out.mkdir()
    # Without the CRF: on this random model's probabilities near 0.5 it labels every voxel.
    result = run("segment", "-i", cases, "-o", out, "--model", small_model_path, "--quiet", "--no-crf")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ct.nii.gz", "patient 7.nii.gz"]
    assert unzipped(out / "patient 7.nii.gz") == unzipped(out / "ct.nii.gz")
    mask = nib.load(out / "patient 7.nii.gz")
    voxels = np.asarray(mask.dataobj)
    assert np.array_equal(mask.affine, nib.load(nifti).affine) and 0 < voxels.sum() < voxels.size
    for name, source in (("dicom", folder), ("nifti", nifti)):
        one = run("segment", source, tmp_path / f"{name}.nii.gz", "--model", small_model_path,
                  "--probability", tmp_path / f"{name}-p.nii.gz", "--threads", 2, "--no-crf")
        assert one.returncode == 0, one.stderr
    assert unzipped(tmp_path / "dicom.nii.gz") == unzipped(out / "ct.nii.gz")
    assert unzipped(tmp_path / "dicom-p.nii.gz") == unzipped(tmp_path / "nifti-p.nii.gz")
    # eval's preview draws the series as it draws the NIfTI.
    liver = require_data("totalseg-example/liver-20slices.nii.gz")
    for name, source in (("dicom", folder), ("nifti", nifti)):
        shown = run("eval", liver, liver, "--ct", source, "--preview", tmp_path / f"{name}.png", "--quiet")
        assert shown.returncode == 0, shown.stderr
    assert (tmp_path / "dicom.png").read_bytes() == (tmp_path / "nifti.png").read_bytes()


def test_cli_chooses_the_largest_axial_ct_series_and_names_it(two_series, reference, nifti_fields, tmp_path,
                                                              small_model_path):
    from test_cli import run
    fields, stderr = cli_info(two_series)
    assert fields["series_uid"] == "1.2.3.20" and fields["other_series"] == ["1.2.3.5"]
    assert_same_volume(fields, nifti_fields)
    assert stderr.count("\n") == 1 and stderr.startswith(
        f"liverseg: note: {two_series} holds 2 series; reading 1.2.3.20 (CT, 20 slices, axial, \"CT Body 3.0\"), "
        "the largest axial CT series (--series UID reads another). Others: 1.2.3.5 (CT, 5 slices, axial"), stderr
    # --series reads the other (the five top slices), and so does one of its files.
    top = reference[0][:, :, 15:]
    shifted = reference[1].copy()
    shifted[:3, 3] += 15 * reference[1][:3, 2]
    for args in ((two_series, "--series", "1.2.3.5"), (two_series / "other" / "3.dcm",)):
        small, stderr = cli_info(*args)
        assert stderr == "" and small["series_uid"] == "1.2.3.5" and small["size"] == [512, 512, 5]
        assert (small["min"], small["max"], small["nonzero_voxels"]) == (top.min(), top.max(), np.count_nonzero(top))
        np.testing.assert_allclose(small["ijk_to_ras"], shifted, rtol=0, atol=1e-9)
    result = run("segment", two_series, tmp_path / "top.nii.gz", "--series", "1.2.3.5", "--model", small_model_path)
    assert result.returncode == 0 and "note" not in result.stderr, result.stderr   # 5 slices: a warning
    written = nib.load(tmp_path / "top.nii.gz")
    assert written.shape == (512, 512, 5) and np.array_equal(written.affine, shifted)
    unknown = run("info", two_series, "--series", "9.9")
    assert unknown.returncode == 65 and unknown.stderr.count("\n") == 1
    assert f"{two_series}: no series 9.9; there are 1.2.3.20 (CT, 20 slices" in unknown.stderr
    # A series that is not axial is never chosen, and refused when named.
    sagittal = two_series / "sagittal"
    sagittal.mkdir()
    for n, path in enumerate(sorted((two_series / "other").iterdir())):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.ImageOrientationPatient = "1.2.3.99", [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-100 + 2 * n, -200, 0]
        ds.save_as(sagittal / f"{n}.dcm")
    assert cli_info(two_series)[0]["series_uid"] == "1.2.3.20"
    named = run("info", two_series, "--series", "1.2.3.99")
    assert named.returncode == 69 and "series 1.2.3.99 is sagittal, not axial" in named.stderr, named.stderr
    alone = run("info", sagittal)
    assert alone.returncode == 69 and f"{sagittal}: no axial CT series among its one series: 1.2.3.99" in alone.stderr


def test_cli_refuses_folders_without_dicom_and_broken_series(two_series, tmp_path_factory, small_model_path):
    from test_cli import run
    tmp_path = tmp_path_factory.mktemp("broken")   # two_series is the test's tmp_path
    empty, text = tmp_path / "empty", tmp_path / "text"
    empty.mkdir()
    text.mkdir()
    (text / "a.txt").write_text("x")
    (text / "b").write_bytes(b"\0" * 300)
    shutil.rmtree(two_series / "other")
    gap = tmp_path / "gap"
    shutil.copytree(two_series, gap)
    (gap / "010.dcm").unlink()
    duplicate = tmp_path / "duplicate"
    shutil.copytree(two_series, duplicate)
    shutil.copyfile(duplicate / "010.dcm", duplicate / "copy.dcm")
    # Truncated files (an interrupted copy): Debian's GDCM aborts on some (a failed assertion),
    # in its own process; the error names the file either way.
    truncated = {}
    for size in (200, 3000, 6000):
        truncated[size] = tmp_path / f"truncated-{size}"
        shutil.copytree(two_series, truncated[size])
        path = truncated[size] / "007.dcm"
        path.write_bytes(path.read_bytes()[:size])
    cases = [
        (["info", empty], 65, f"liverseg: invalid argument: {empty}: empty folder, no DICOM files"),
        (["info", text], 65, f"liverseg: invalid argument: {text}: no DICOM files among its 2 files"),
        (["segment", text, tmp_path / "m.nii.gz"], 65, f"{text}: no DICOM files"),
        (["info", text / "b"], 65, f"{text / 'b'}: neither a DICOM file nor an image file"),
        (["info", tmp_path / "nowhere"], 74, f"{tmp_path / 'nowhere'}: no such file or folder"),
        (["info", gap], 65, "slices are not evenly spaced: 4 mm between"),
        (["info", duplicate], 65, "two slices at the same position"),
        (["info", truncated[200]], 65, f"while reading the header of {truncated[200] / '007.dcm'}"),
        (["info", truncated[3000]], 65, str(truncated[3000] / "007.dcm")),
        (["segment", truncated[6000], tmp_path / "m.nii.gz"], 65, str(truncated[6000] / "007.dcm")),
        (["info", require_data("totalseg-example/ct-20slices.nii.gz"), "--series", "1.2"], 65, "is an image file"),
        (["segment", "-i", two_series, "-o", tmp_path / "out"], 65, "holds DICOM files itself"),
        (["segment", two_series, "-o", tmp_path / "out", "--series", "1.2"], 64, "--series"),
    ]
    for args, code, message in cases:
        result = run(*args, *(["--model", small_model_path] if args[0] == "segment" else []))
        assert result.returncode == code and message in result.stderr, (args, result.returncode, result.stderr)
        assert result.stderr.count("\n") == 1 or code == 64, result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.nii.gz").exists()
    # A FIFO among the files is skipped, not opened (it would block).
    os.mkfifo(two_series / "fifo")
    assert cli_info(two_series)[0]["size"] == [512, 512, 20]


def rewrite_series(target, change):
    """The 20-slice series decoded by pydicom, `change(dataset, HU array, index)` applied to
    each slice, saved under `target`."""
    target.mkdir()
    for n, path in enumerate(sorted(require_data(SERIES).iterdir())):
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        ds.decompress()
        change(ds, hu, n)
        ds.save_as(target / path.name)


def stored(ds, values, signed, slope=1, intercept=0):
    ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = int(signed), 16, 16, 15
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = values.astype(np.int16 if signed else np.uint16).tobytes()


VARIANTS = {
    # Transfer syntaxes other than the original JPEG 2000 lossless.
    "explicit VR little endian": lambda ds, hu, n: None,
    "RLE lossless": lambda ds, hu, n: ds.compress(pydicom.uid.RLELossless),
    # Signed stored values in HU; a non-integral rescale common to all slices; rescales that
    # differ between slices.
    "signed HU": lambda ds, hu, n: stored(ds, hu, True),
    "slope 0.5": lambda ds, hu, n: stored(ds, 2 * (hu + 1024), False, 0.5, -1024),
    "slope per slice": lambda ds, hu, n: stored(ds, (hu + 1024) * (2 << n % 2), False, 1 / (2 << n % 2), -1024),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_cli_reads_other_encodings_of_the_series_to_the_same_intensities(variant, tmp_path, nifti_fields):
    rewrite_series(tmp_path / "series", VARIANTS[variant])
    fields = cli_info(tmp_path / "series")[0]
    expected = {"slope 0.5": ("int16", 0.5, -1024), "slope per slice": ("float64", 1, 0)}.get(variant, ("int16", 1, 0))
    assert (fields["dtype"], fields["scl_slope"], fields["scl_inter"]) == expected
    for key in ("size", "ijk_to_ras", "min", "max", "nonzero_voxels"):
        assert fields[key] == nifti_fields[key], key
