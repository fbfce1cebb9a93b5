"""Shared fixtures: the library under test, small random models, the real CT data."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
DATA = Path(os.environ.get("LIVERSEG_DATA", ROOT.parent / "shared" / "data"))

import liverseg  # noqa: E402


def small_architecture(kernels=None):
    """The paper's topology with few channels (fast tests)."""
    arch = liverseg.paper_architecture()
    arch["conv_channels"] = [3, 4, 4, 5, 5, 4]
    arch["main_deconv_channels"] = 3
    arch["branch2_deconv_channels"] = 2
    if kernels is not None:
        arch["conv_kernels"] = kernels
    return arch


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory):
    """A small random model on a 4 mm grid in LPS orientation."""
    path = tmp_path_factory.mktemp("models") / "small.safetensors"
    arch = small_architecture()
    pre = dict(liverseg.model_file.DEFAULT_PREPROCESSING, spacing_mm=[4.0, 4.0, 4.0], orientation="LPS")
    liverseg.save_model(path, arch, liverseg.random_weights(arch, seed=5), preprocessing=pre, fusion_tau=(0.2, 0.3))
    return path


@pytest.fixture(scope="session")
def small_model(small_model_path):
    return liverseg.Model(small_model_path)


@pytest.fixture(scope="session")
def real_model():
    """The bundled model."""
    return liverseg.Model(ROOT / "models" / "liver-default.safetensors")


def require_data(name):
    path = DATA / name
    if not path.exists():
        pytest.fail(f"test data {path} is missing: tests need ../shared/data beside the checkout")
    return path


@pytest.fixture(scope="session")
def ircadb01():
    """(CT int16 [x, y, z], affine, liver mask) of 3D-IRCADb-01 patient 1."""
    import nibabel as nib
    ct = nib.load(require_data("ircadb1-01/ct.nii.gz"))
    mask = nib.load(require_data("ircadb1-01/liver.nii.gz"))
    return np.asarray(ct.dataobj).astype(np.int16), ct.affine, np.asarray(mask.dataobj).astype(np.uint8)
