"""The leave-one-out tools' own logic: fold-prefix parsing (tools/loo_table.py) and the
border / far-piece split of tools/error_regions.py against a brute-force distance oracle."""
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from error_regions import far_pieces  # noqa: E402
from loo_table import fold_model, variant, variant_label  # noqa: E402


@pytest.mark.parametrize("prefix, expected, label", [
    ("", ("3", "anatomical", "0"), "3 mm"), ("s4-", ("4", "anatomical", "0"), "4 mm"),
    ("s2.5-", ("2.5", "anatomical", "0"), "2.5 mm"), ("s3-seed1-", ("3", "anatomical", "1"), "3 mm seed 1"),
    ("s3-elastic-", ("3", "elastic", "0"), "3 mm elastic"),
    ("s4-elastic-seed2-", ("4", "elastic", "2"), "4 mm elastic seed 2")])
def test_variant(prefix, expected, label):
    assert variant(prefix) == expected
    assert variant_label(prefix) == label


@pytest.mark.parametrize("prefix", ["s4", "seed1-", "s-", "x4-", "s4-seed-", "s3-seed1-elastic-", "elastic-"])
def test_variant_rejects(prefix):
    with pytest.raises(SystemExit, match="is not"):
        variant(prefix)


def test_missing_fold_model_names_its_command():
    with pytest.raises(SystemExit, match=r"`SPACING=3 SEED=7 tools/train_bundled.sh loo-ircadb1-17 "
                                         r"models/training/s3-seed7-loo-ircadb1-17`"):
        fold_model("ircadb1-17", "s3-seed7-")
    with pytest.raises(SystemExit, match=r"`SPACING=3 AUGMENTATION=elastic tools/train_bundled.sh loo-ircadb1-01 "
                                         r"models/training/s3-elastic-loo-ircadb1-01`"):
        fold_model("ircadb1-01", "s3-elastic-")


def test_far_pieces_against_brute_force():
    rng = np.random.default_rng(5)
    other = np.zeros((14, 12, 10), dtype=bool)
    other[3:8, 3:9, 2:7] = True
    error = (rng.random(other.shape) < 0.15) & ~other
    error[11:14, 0:3, 7:10] = True  # a far cube, 3 × 3 × 3 voxels
    spacing = np.array([1.5, 2.0, 2.5])
    border, labels = far_pieces(error, other, spacing, 4.0)
    pieces = [labels == k for k in range(1, labels.max() + 1)]
    inside = np.argwhere(other) * spacing
    for voxel in np.argwhere(error):
        nearest = np.min(np.linalg.norm(inside - voxel * spacing, axis=1))
        assert border[tuple(voxel)] == (nearest <= 4.0)
    assert not (border & ~error).any()
    union = np.zeros_like(error)
    for piece in pieces:
        assert piece.any() and not (piece & union).any()
        union |= piece
    np.testing.assert_array_equal(union, error & ~border)
    cube = np.zeros_like(error)
    cube[11:14, 0:3, 7:10] = True
    assert any((piece & cube).sum() == 27 for piece in pieces)
