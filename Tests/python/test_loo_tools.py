"""The leave-one-out tools' own logic: fold-prefix parsing (tools/recipe_runs.py) and the
border / far-piece split of tools/error_regions.py against a brute-force distance oracle."""
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from error_regions import far_pieces  # noqa: E402
from recipe_runs import checkpoint_epochs, fold_model, training_command, variant, variant_label  # noqa: E402
from training_state import recipe_run, state  # noqa: E402


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


@pytest.mark.parametrize("name, expected", [
    ("F", ("", "F")), ("V", ("", "V")), ("loo-ircadb1-07", ("", "loo-ircadb1-07")), ("s4-F", ("s4-", "F")),
    ("s3-elastic-seed1-loo-totalseg-3mm", ("s3-elastic-seed1-", "loo-totalseg-3mm")),
    ("aug-symmetric", None), ("s3-seed1-elastic-loo-ircadb1-01", None), ("s4-G", None)])
def test_recipe_run_folder_names(name, expected):
    assert recipe_run(name) == expected


def test_training_command_names_the_variant():
    assert training_command("F", "s4-") == "SPACING=4 tools/train_bundled.sh F models/training/s4-F"
    assert training_command("V") == "tools/train_bundled.sh V models/training/V"
    assert (training_command("loo-totalseg-3mm", "s3-elastic-seed2-")
            == "SPACING=3 AUGMENTATION=elastic SEED=2 tools/train_bundled.sh loo-totalseg-3mm "
               "models/training/s3-elastic-seed2-loo-totalseg-3mm")


def test_run_state_compares_log_and_checkpoint(tmp_path):
    """A committed checkpoint's epoch (read from its header) against logs that agree with it,
    lag it or run ahead of it, and a process training the folder."""
    committed = ROOT / "models" / "training" / "s4-loo-ircadb1-07"
    epochs = checkpoint_epochs(committed)
    assert epochs == 300
    folder = tmp_path / "s4-loo-ircadb1-07"
    folder.mkdir()
    (folder / "model.safetensors.checkpoint").symlink_to(committed / "model.safetensors.checkpoint")
    lines = (committed / "log.csv").read_text().splitlines()
    for logged, expected in [(300, "done"), (299, "mismatch"), (301, "mismatch")]:
        extra = [lines[-1].replace("300,", "301,", 1)] if logged == 301 else []
        (folder / "log.csv").write_text("\n".join(lines[:logged + 1] + extra) + "\n")
        assert state(folder, 300, []) == (logged, 300, expected)
        assert state(folder, 400, []) == (logged, 300, "resumable" if expected == "done" else expected)
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    training = [f"123 .build/release/liverseg-cli train --epochs 300 --out {folder}/model.safetensors --log x"]
    assert state(folder, 300, training)[2] == "training"
    assert state(folder, 300, [line.replace("s4-loo", "s6-loo") for line in training])[2] == "done"
