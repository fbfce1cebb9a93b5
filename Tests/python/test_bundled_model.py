"""The bundled model on real CT (see docs/training.md for how it was trained, chosen and
measured). Every case here is a *training* case (the data roles of 2026-12): these tests
guard the model file and the pipeline against regressions; generalisation is measured on
the external cases, which no test or picture may use."""
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import liverseg
from conftest import ROOT, require_data

MODEL = ROOT / "models" / "liver-default.safetensors"


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def load(ct_path, reference_path):
    img = nib.load(require_data(ct_path))
    return np.asarray(img.dataobj), img.affine, np.asarray(nib.load(require_data(reference_path)).dataobj) > 0.5


# (CT, reference, Dice without the CRF, Dice with the model's CRF): the 0.5 ensemble (3 mm
# and 4 mm networks) measured 0.952 / 0.965, 0.940 / 0.958, 0.951 / 0.960, 0.933 / 0.946 and
# 0.901 / 0.956 (docs/training.md, tools/evaluate_model.py). Each threshold is 0.03 below the
# measured value, rounded down: the pipeline is deterministic, so a drop of that size is a
# regression in the model file or the pipeline, not noise.
CASES = [("ircadb1-01/ct.nii.gz", "ircadb1-01/liver.nii.gz", 0.92, 0.93),
         ("ircadb1-07/ct.nii.gz", "ircadb1-07/liver.nii.gz", 0.91, 0.92),
         ("ircadb1-17/ct.nii.gz", "ircadb1-17/liver.nii.gz", 0.92, 0.93),
         ("totalseg-example/ct-3mm.nii.gz", "totalseg-example/liver-3mm.nii.gz", 0.90, 0.91),
         ("totalseg-example/ct-20slices.nii.gz", "totalseg-example/liver-20slices.nii.gz", 0.87, 0.92)]


@pytest.mark.parametrize("ct_path,reference_path,threshold,crf_threshold", CASES)
def test_bundled_model_segments_each_training_case(ct_path, reference_path, threshold, crf_threshold):
    ct, affine, reference = load(ct_path, reference_path)
    model = liverseg.Model(MODEL)
    assert dice(model.segment(ct, affine=affine, crf=False), reference) > threshold
    assert dice(model.segment(ct, affine=affine, crf=True), reference) > crf_threshold


@pytest.mark.parametrize("ct_path,reference_path", [CASES[2][:2], CASES[4][:2]])
def test_the_liver_does_not_follow_a_mirrored_ct(ct_path, reference_path):
    """The CT mirrored left–right with its affine unchanged puts the liver on the patient's
    left. The 0.1 model, trained with random mirroring, scored the same either way (mean
    0.831 vs 0.821 on the training cases); this one must not find the mirrored liver as
    well as the real one (measured on IRCADb-17 0.951 vs 0.535, 20-slice CT 0.901 vs 0.667)."""
    ct, affine, reference = load(ct_path, reference_path)
    model = liverseg.Model(MODEL)
    axis = int(np.argmax(np.abs(affine[0, :3])))       # the array axis along R–L
    straight = dice(model.segment(ct, affine=affine, crf=False), reference)
    mirrored = dice(model.segment(np.flip(ct, axis).copy(), affine=affine, crf=False), np.flip(reference, axis))
    assert straight - mirrored > 0.15, (straight, mirrored)


@pytest.mark.parametrize("ct_path,reference_path", [CASES[2][:2], CASES[3][:2]])
def test_crf_around_the_largest_component_matches_the_crf_everywhere(ct_path, reference_path):
    """With the largest component kept, segment runs the CRF only in a box around the
    thresholded liver (2θα beyond it). Against the CRF on every uncertain voxel followed by
    scipy's largest component, the masks agree to Dice 0.9992 (IRCADb-17) and 0.9978 (3 mm
    CT): the permutohedral lattice's approximation depends on which points it holds, so they
    are not identical; 0.997 allows that and nothing of the size of a wrong organ or border."""
    ct, affine, reference = load(ct_path, reference_path)
    model = liverseg.Model(MODEL)
    around = model.segment(ct, affine=affine, crf=True, postprocess="largest_component")
    everywhere = model.segment(ct, affine=affine, crf=True, postprocess=False)
    labels, _ = ndimage.label(everywhere)
    largest = labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])
    assert dice(around, largest) > 0.997
    assert abs(dice(around, reference) - dice(largest, reference)) < 0.002


def test_bundled_model_describes_itself():
    """An ensemble of the paper-width DSN trained on a 3 mm and on a 4 mm grid, each on the
    five training cases only, with anatomy-preserving augmentation."""
    model = liverseg.Model(MODEL)
    meta = model.metadata
    assert model.info["n_networks"] == 2 and model.info["format_version"] == 2
    assert [n["preprocessing"]["spacing_mm"] for n in meta["networks"]] == [[3, 3, 3], [4, 4, 4]]
    for network in meta["networks"]:
        provenance = network["provenance"]
        assert provenance["trainer"] == "liverseg train" and provenance["epochs"] == 300
        assert provenance["augmentation"] == "anatomical" and provenance["architecture"] == "paper"
        assert len(provenance["data"]) == 5 and not any("radcttaceomics" in path for path in provenance["data"])
    assert model.info["spacing"] == [3.0, 3.0, 3.0]
