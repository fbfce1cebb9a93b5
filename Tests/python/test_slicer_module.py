"""examples/slicer-module: the LiverSegmentation logic (VTK + the installed liverseg, found
with find_package) built with CMake and run on real CTs handed over as Slicer holds them
(VTK_SHORT image data + IJK->RAS matrix); its label map must equal the Python API's mask."""
import subprocess

import numpy as np
import pytest

import liverseg
from conftest import ROOT, require_data

EXAMPLE = ROOT / "examples" / "slicer-module"
MODEL = ROOT / "models" / "liver-default.safetensors"


def run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """segment_volume, built against liverseg installed by `make install` and the system's VTK
    (tools/setup.sh test installs libvtk9-dev)."""
    tmp = tmp_path_factory.mktemp("slicer-module")
    run(["make", "-C", ROOT, "install", f"PREFIX={tmp / 'prefix'}"])
    run(["cmake", "-S", EXAMPLE, "-B", tmp / "build", "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={tmp / 'prefix'}",
         "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror"])
    run(["cmake", "--build", tmp / "build"])
    return tmp / "build" / "segment_volume"


def segment_with_logic(program, ct, affine, tmp_path, *options):
    """The label map of segment_volume for an int16 [x, y, z] CT, and its report line."""
    # vtkImageData keeps x fastest, as a Fortran-ordered [x, y, z] array; a C-ordered dump
    # (Slicer's arrayFromVolume order, [k, j, i]) would hand VTK the axes reversed.
    np.asfortranarray(ct, dtype="<i2").ravel(order="F").tofile(tmp_path / "ct.raw")
    np.ascontiguousarray(affine, dtype="<f8").tofile(tmp_path / "ijk_to_ras.bin")
    result = subprocess.run([str(program), str(MODEL), str(tmp_path / "ct.raw"), *map(str, ct.shape),
                             str(tmp_path / "ijk_to_ras.bin"), str(tmp_path / "labelmap.raw"), *options],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None, result
    return np.fromfile(tmp_path / "labelmap.raw", np.uint8).reshape(ct.shape, order="F"), result


@pytest.mark.parametrize("case,reference", [("ircadb1-01/ct.nii.gz", "ircadb1-01/liver.nii.gz"),
                                            ("totalseg-example/ct-3mm.nii.gz", "totalseg-example/liver-3mm.nii.gz")])
def test_label_map_equals_the_python_api(program, case, reference, tmp_path):
    """IRCADb-01 has an LPS-like affine (diag -1, -1, 1), ct-3mm a RAS one and int32 voxels
    (handed over as short, as Slicer would hold them)."""
    ct, geometry = liverseg.read_image(require_data(case))
    ct = ct.astype(np.int16)
    label_map, result = segment_with_logic(program, ct, geometry.affine, tmp_path)
    assert label_map is not None, result.stdout + result.stderr
    nx, ny, nz = ct.shape
    assert f"ok scalars unsigned char dims {nx} {ny} {nz}" in result.stdout
    assert "on-calling-thread yes" in result.stdout and int(result.stdout.split("progress-events ")[1].split()[0]) > 0
    expected = liverseg.Model(MODEL).segment(ct, affine=geometry.affine)
    assert np.array_equal(label_map, expected), int((label_map != expected).sum())
    # Not mirrored in both: the label map finds the liver of the reference mask.
    truth, _ = liverseg.read_image(require_data(reference))
    assert liverseg.evaluate(label_map, truth, geometry.spacing)["dice"] > 0.8


def test_crf_and_cancel_reach_the_library(program, tmp_path):
    ct, geometry = liverseg.read_image(require_data("totalseg-example/ct-3mm.nii.gz"))
    ct = ct.astype(np.int16)
    label_map, result = segment_with_logic(program, ct, geometry.affine, tmp_path, "--crf")
    assert label_map is not None, result.stdout + result.stderr
    model = liverseg.Model(MODEL)
    refined, thresholded = (model.segment(ct, affine=geometry.affine, crf=crf) for crf in (True, False))
    assert np.array_equal(label_map, refined) and not np.array_equal(refined, thresholded)
    label_map, result = segment_with_logic(program, ct, geometry.affine, tmp_path, "--no-crf")
    assert label_map is not None and np.array_equal(label_map, thresholded), result.stdout + result.stderr
    label_map, result = segment_with_logic(program, ct, geometry.affine, tmp_path, "--cancel")
    assert label_map is None and result.returncode == 3 and "cancelled" in result.stdout, result.stdout + result.stderr
