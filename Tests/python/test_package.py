"""The Python package's conveniences: HU by default, nibabel and SimpleITK images in and
out with their geometry (the [z, y, x] axis-order trap), picklable models, the default
model, and `python -m liverseg` running the CLI."""
import multiprocessing
import pickle
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import liverseg
from conftest import ROOT, require_data
from test_cli import CLI


def test_a_uint16_ct_with_an_intercept_is_read_in_hu(tmp_path, small_model):
    """The trap the default guards against: the same CT stored as uint16 + (-1024) reads
    as the int16 HU volume and segments identically; its stored values would not."""
    ct, geometry = liverseg.read_image(require_data("totalseg-example/ct-3mm.nii.gz"))
    ct = np.maximum(ct, -1024)   # what uint16 with a -1024 intercept can hold
    stored = (ct + 1024).astype(np.uint16)
    path = tmp_path / "uint16.nii.gz"
    liverseg.write_image(path, stored, liverseg.Geometry(geometry.affine, 1.0, -1024.0))
    hu, plain = liverseg.read_image(path)
    assert np.array_equal(hu, ct) and plain == liverseg.Geometry(geometry.affine)
    expected = small_model.segment(ct, affine=geometry.affine)
    assert np.array_equal(small_model.segment(hu, affine=plain.affine), expected)
    raw, _ = liverseg.read_image(path, scaled=False)
    assert raw.dtype == np.uint16 and not np.array_equal(small_model.segment(raw, affine=plain.affine), expected)
    # nibabel images go through their scaling too.
    assert np.array_equal(np.asarray(small_model.segment_image(nib.load(path)).dataobj), expected)


def test_nibabel_and_simpleitk_images_in_and_out(small_model):
    """The CT's extents differ on every axis (122x101x112), so a missed transposition of
    ITK's [z, y, x] arrays cannot go unnoticed; both kinds must give the mask of the
    library's own reader, on the input's grid, as an image of the input's kind."""
    path = require_data("totalseg-example/ct-3mm.nii.gz")
    ct, geometry = liverseg.read_image(path)
    expected, probability = small_model.segment(ct, affine=geometry.affine, return_probability=True)

    img = nib.load(path)
    mask = small_model.segment_image(img)
    assert isinstance(mask, nib.Nifti1Image) and np.array_equal(mask.affine, img.affine)
    assert mask.get_data_dtype() == np.uint8 and np.array_equal(np.asarray(mask.dataobj), expected)
    assert int(mask.header["sform_code"]) == int(img.header["sform_code"])

    image = sitk.ReadImage(str(path))
    assert image.GetSize() == ct.shape
    sitk_mask, sitk_probability = small_model.segment_image(image, return_probability=True)
    assert isinstance(sitk_mask, sitk.Image) and sitk_mask.GetSize() == image.GetSize()
    assert (sitk_mask.GetOrigin(), sitk_mask.GetSpacing(), sitk_mask.GetDirection()) == \
        (image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(sitk_mask).T, expected)
    assert np.array_equal(sitk.GetArrayFromImage(sitk_probability).T, probability)
    # The trap itself: ITK's array as if it were [x, y, z] is another volume altogether.
    assert sitk.GetArrayFromImage(image).shape == ct.shape[::-1]

    with pytest.raises(TypeError, match="nibabel or SimpleITK"):
        small_model.segment_image(ct)


def _segment_in_child(model, ct, affine):
    return model.segment(ct, affine=affine)


def test_models_pickle_by_path_or_bytes_and_cross_processes(small_model_path, small_model):
    ct, geometry = liverseg.read_image(require_data("totalseg-example/ct-3mm.nii.gz"))
    expected = small_model.segment(ct, affine=geometry.affine)
    from_bytes = liverseg.Model(data=small_model_path.read_bytes())
    for model in (small_model, from_bytes):
        copy = pickle.loads(pickle.dumps(model))
        assert copy.path == model.path and np.array_equal(copy.segment(ct, affine=geometry.affine), expected)
    assert small_model.path == str(small_model_path) and from_bytes.path is None
    assert len(pickle.dumps(small_model)) < 1000   # a path, not the weights
    # A fresh interpreter (spawn) gets the model through pickling.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert np.array_equal(pool.apply(_segment_in_child, (small_model, ct, geometry.affine)), expected)


def test_the_default_model_is_the_bundled_one(monkeypatch, small_model_path):
    monkeypatch.delenv("LIVERSEG_MODEL", raising=False)
    assert liverseg.default_model_path() == ROOT / "models" / "liver-default.safetensors"
    assert liverseg.Model().path == str(ROOT / "models" / "liver-default.safetensors")
    monkeypatch.setenv("LIVERSEG_MODEL", str(small_model_path))
    assert liverseg.Model().info == liverseg.Model(small_model_path).info


def test_python_m_liverseg_runs_the_cli(tmp_path):
    env = {"LIVERSEG_CLI": str(CLI), "PYTHONPATH": str(ROOT / "bindings" / "python"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "liverseg", "info", "--json", str(ROOT / "models" / "liver-default.safetensors")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and '"architecture":"dsn3d"' in result.stdout.replace(" ", ""), result.stderr
    missing = subprocess.run([sys.executable, "-m", "liverseg", "info", str(tmp_path / "none.nii.gz")],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 74 and missing.stderr.startswith("liverseg: ")
    absent = subprocess.run([sys.executable, "-m", "liverseg", "--help"], capture_output=True, text=True, timeout=120,
                            env=dict(env, LIVERSEG_CLI=str(tmp_path / "nothing")))
    assert absent.returncode == 1 and "not at" in absent.stderr
