"""The bundled model on real CT (see docs/training.md for how it was trained and measured)."""
import nibabel as nib
import numpy as np

import liverseg
from conftest import ROOT, require_data

MODEL = ROOT / "models" / "liver-default.safetensors"


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_bundled_model_finds_the_liver_in_the_external_ct():
    """TotalSegmentator's 20-slice abdomen was never used for training or tuning. Measured:
    Dice 0.730 thresholded, 0.776 with the model's CRF; the thresholds sit just below, so a
    regression in the model or the pipeline fails here. (The 3 mm CT is unenhanced — liver
    ≈ 46 HU against ≈ 110 HU in the training CT — and this model finds no liver in it:
    Dice 0, so no threshold can be justified for it; see docs/training.md.)"""
    img = nib.load(require_data("totalseg-example/ct-20slices.nii.gz"))
    reference = np.asarray(nib.load(require_data("totalseg-example/liver-20slices.nii.gz")).dataobj) > 0.5
    model = liverseg.Model(MODEL)
    ct = np.asarray(img.dataobj)
    assert dice(model.segment(ct, affine=img.affine), reference) > 0.70
    assert dice(model.segment(ct, affine=img.affine, crf=True), reference) > 0.75


def test_bundled_model_describes_itself():
    model = liverseg.Model(MODEL)
    meta = model.metadata
    assert meta["provenance"]["trainer"] == "liverseg train"
    assert meta["crf"]["mu1"] == 10 and meta["fusion"]["tau"] == [0.3, 0.3]
    assert model.info["spacing"] == [2.5, 2.5, 2.5]
