"""The `liverseg` command end to end on a real CT: segment, then eval, then info; exit
codes, the written files' geometry, the preview PNG, and one-line errors."""
import csv
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import liverseg
from conftest import ROOT, require_data

sys.path.insert(0, str(ROOT / "tools"))
from recipe_runs import checkpoint_epochs  # noqa: E402

CLI = Path(os.environ.get("LIVERSEG_CLI", ROOT / ".build" / "release" / "liverseg-cli"))


def run(*args, env=None):
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: build it with `make cli` (or set LIVERSEG_CLI)")
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env=None if env is None else dict(os.environ, **env))


def png_size(path):
    """(width, height) of a PNG, after checking its signature, chunk CRCs and image data."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    assert len(zlib.decompress(chunks[b"IDAT"])) == (3 * width + 1) * height
    return width, height


@pytest.fixture(scope="module")
def segmented(tmp_path_factory, small_model_path):
    """Runs `liverseg segment` once on the external int32 CT."""
    out = tmp_path_factory.mktemp("cli")
    ct = require_data("totalseg-example/ct-3mm.nii.gz")
    result = run("segment", ct, out / "mask.nrrd", "--model", small_model_path, "--probability", out / "prob.nii.gz",
                 "--preview", out / "preview.png", "--threads", 2, "--no-crf")
    return ct, out, result


def test_segment_writes_mask_probability_and_preview_on_the_input_grid(segmented):
    ct, out, result = segmented
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not a terminal: no progress bar
    assert "liver voxels" in result.stdout
    reference = nib.load(ct)
    mask, geometry = liverseg.read_image(out / "mask.nrrd")
    assert mask.shape == reference.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    np.testing.assert_allclose(geometry.affine, reference.affine, atol=1e-9)
    probability = nib.load(out / "prob.nii.gz")
    assert np.array_equal(probability.affine, reference.affine)
    p = np.asarray(probability.dataobj)
    # The mask is the thresholded probability after the default post-processing (the CT's
    # head-to-foot axis is its third).
    from test_postprocess import scipy_postprocess
    assert p.dtype == np.float32 and np.array_equal(scipy_postprocess(p >= 0.5), mask)
    assert png_size(out / "preview.png") == (768, 256)


def test_segment_without_post_processing_writes_the_thresholded_probability(segmented, small_model_path, tmp_path):
    ct, out, _ = segmented
    result = run("segment", ct, tmp_path / "raw.nii.gz", "--model", small_model_path, "--postprocess", "none", "--no-crf")
    assert result.returncode == 0, result.stderr
    p = np.asarray(nib.load(out / "prob.nii.gz").dataobj)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "raw.nii.gz").dataobj), (p >= 0.5).astype(np.uint8))


def test_bad_post_processing_is_refused_before_reading(tmp_path, small_model_path):
    result = run("segment", tmp_path / "missing.nii.gz", tmp_path / "m.nii.gz", "--model", small_model_path,
                 "--postprocess", "largest")
    assert result.returncode != 0 and "largest_component" in result.stderr
    assert not (tmp_path / "m.nii.gz").exists()


def test_unwritable_outputs_are_refused_before_reading(tmp_path, small_model_path):
    """Every output is checked before the input is read (here it does not even exist)."""
    missing_input = tmp_path / "missing.nii.gz"
    cases = [
        (["--probability", tmp_path / "no_dir" / "p.nii.gz"], 74, "no_dir"),
        (["--probability", tmp_path / "p.png"], 65, "unknown image file extension"),
        (["--preview", tmp_path / "no_dir" / "preview.png"], 74, "no_dir"),
        (["--statistics", tmp_path / "no_dir" / "stats.json"], 74, "no_dir"),
    ]
    for extra, code, message in cases:
        result = run("segment", missing_input, tmp_path / "out.nii.gz", "--model", small_model_path, *extra)
        assert result.returncode == code and message in result.stderr, (extra, result.returncode, result.stderr)
    result = run("segment", missing_input, tmp_path / "out.txt", "--model", small_model_path)
    assert result.returncode == 65 and "out.txt" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_segment_with_a_bad_probability_path_leaves_no_mask(tmp_path, small_model_path):
    ct = require_data("totalseg-example/ct-3mm.nii.gz")
    result = run("segment", ct, tmp_path / "out.nii.gz", "--model", small_model_path,
                 "--probability", tmp_path / "missing_dir" / "p.nii.gz")
    assert result.returncode == 74 and "missing_dir" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failing_late_output_removes_the_others(tmp_path, small_model_path):
    """A probability that NIfTI-1 cannot hold (an extent > 32767) fails only when written:
    the mask written before it must not stay behind, nor any temporary file."""
    ct = tmp_path / "ct.nrrd"
    liverseg.write_image(ct, np.zeros((40000, 2, 2), np.int16), np.diag([0.1, 4.0, 4.0, 1.0]))
    out = tmp_path / "out"
    out.mkdir()
    result = run("segment", ct, out / "mask.nrrd", "--model", small_model_path, "--probability", out / "p.nii",
                 "--preview", out / "preview.png")
    assert result.returncode == 69 and "32767" in result.stderr, result.stderr
    assert list(out.iterdir()) == []


def test_segment_without_probability_gives_the_same_mask(segmented, small_model_path, tmp_path):
    """The common call: no --probability (the library is then passed no probability buffer)."""
    ct, out, _ = segmented
    result = run("segment", ct, tmp_path / "mask.nii.gz", "--model", small_model_path, "--quiet", "--no-crf")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    mask, _ = liverseg.read_image(tmp_path / "mask.nii.gz")
    assert np.array_equal(mask, liverseg.read_image(out / "mask.nrrd")[0])


def test_segment_runs_the_crf_by_default(segmented, small_model_path, small_model, tmp_path):
    """No flag means --crf, the library's default, and the Python API's: the same file; --no-crf
    (the fixture's) gives another mask."""
    ct, out, _ = segmented
    for flags in ((), ("--crf",)):
        result = run("segment", ct, tmp_path / "mask.nii.gz", "--model", small_model_path, "--quiet", *flags)
        assert result.returncode == 0, result.stderr
        mask, geometry = liverseg.read_image(tmp_path / "mask.nii.gz")
        image, _ = liverseg.read_image(ct)
        assert np.array_equal(mask, small_model.segment(image, affine=geometry.affine, crf=True)), flags
        assert not np.array_equal(mask, liverseg.read_image(out / "mask.nrrd")[0]), flags


def test_eval_and_info_on_the_written_files(segmented, tmp_path):
    ct, out, _ = segmented
    ref = require_data("totalseg-example/liver-3mm.nii.gz")
    result = run("eval", out / "mask.nrrd", ref, ref, ref, "--json", "--connectivity", 26,
                 "--preview", tmp_path / "eval.png", "--ct", ct)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["connectivity"] == 26 and len(report["cases"]) == 2
    mask, geometry = liverseg.read_image(out / "mask.nrrd")
    reference = np.asarray(nib.load(ref).dataobj)
    expected = liverseg.evaluate(mask, reference, geometry.spacing, connectivity=26)
    first = report["cases"][0]
    for key in ("dice", "voe", "vd", "avg_d", "rms_d", "max_d", "hd95"):
        assert first[key] == pytest.approx(expected[key], rel=1e-12)
    for key, value in expected["scores"].items():
        assert first["scores"][key] == pytest.approx(value, rel=1e-12)
    assert report["cases"][1]["dice"] == 1 and report["cases"][1]["scores"]["total"] == 100
    assert report["summary"]["scores"]["total"]["mean"] == pytest.approx((first["scores"]["total"] + 100) / 2)
    assert report["summary"]["dice"]["mean"] == pytest.approx((first["dice"] + 1) / 2)
    assert report["summary"]["dice"]["sd"] == pytest.approx(abs(first["dice"] - 1) / np.sqrt(2))
    assert png_size(tmp_path / "eval.png") == (768, 256)

    table = run("eval", out / "mask.nrrd", ref, ref, ref)
    assert table.returncode == 0 and "mean" in table.stdout and "sd" in table.stdout and "HD95" in table.stdout

    info = run("info", out / "mask.nrrd", "--json")
    assert info.returncode == 0, info.stderr
    fields = json.loads(info.stdout)
    assert fields["dtype"] == "uint8" and fields["size"] == list(mask.shape)
    np.testing.assert_allclose(fields["ijk_to_ras"], nib.load(ct).affine, atol=1e-9)
    text = run("info", ct)
    assert text.returncode == 0 and "int32" in text.stdout and "RAS" in text.stdout


def test_info_describes_a_model(small_model_path):
    result = run("info", small_model_path, "--json")
    assert result.returncode == 0, result.stderr
    fields = json.loads(result.stdout)
    assert fields["format"].endswith("format version 1") and len(fields["networks"]) == 1
    network = fields["networks"][0]
    assert network["architecture"] == "dsn3d" and network["orientation"] == "LPS"
    assert network["parameters"] == liverseg.Model(small_model_path).info["n_parameters"]
    bundled = json.loads(run("info", ROOT / "models" / "liver-default.safetensors", "--json").stdout)
    assert [n["spacing_mm"] for n in bundled["networks"]] == [[3, 3, 3], [4, 4, 4]]
    # The text view shows each network as its own block, one field per line.
    text = run("info", ROOT / "models" / "liver-default.safetensors").stdout.splitlines()
    blocks = [i for i, line in enumerate(text) if line.startswith("networks ")]
    assert [text[i] for i in blocks] == ["networks 1 of 2", "networks 2 of 2"]
    spacings = [line.split(None, 1)[1] for line in text[blocks[0]:] if line.startswith("  spacing_mm ")]
    assert spacings[:2] == ["[3, 3, 3]", "[4, 4, 4]"]


def test_exit_codes_and_one_line_errors(tmp_path, small_model_path):
    ref = require_data("totalseg-example/liver-3mm.nii.gz")
    (tmp_path / "broken.nii").write_bytes(b"\x5c\x01" + b"\0" * 100)
    (tmp_path / "bad.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}      ")
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)   # neither an image file nor DICOM
    cases = [
        (["info", tmp_path / "missing.nii.gz"], 74),
        (["info", tmp_path / "broken.nii"], 65),
        (["eval", ref], 64),
        (["eval", ref, ref, "--connectivity", "8"], 64),
        (["eval", ref, require_data("totalseg-example/liver-20slices.nii.gz")], 65),
        (["segment", ref, tmp_path / "out.nii.gz", "--model", tmp_path / "bad.safetensors"], 65),
        (["segment", ref], 64),
        (["info", tmp_path / "x.png"], 65),
    ]
    for args, code in cases:
        result = run(*args)
        assert result.returncode == code, (args, result.returncode, result.stderr)
        if code != 64:
            assert result.stderr.startswith("liverseg: ") and result.stderr.count("\n") == 1, result.stderr
    # Without --model: $LIVERSEG_MODEL names the model; a missing one is an I/O error.
    missing = run("segment", ref, tmp_path / "out.nii.gz", env={"LIVERSEG_MODEL": str(tmp_path / "none.safetensors")})
    assert missing.returncode == 74 and "none.safetensors" in missing.stderr
    assert not (tmp_path / "out.nii.gz").exists()
    chosen = run("segment", ref, tmp_path / "env.nii.gz", "--quiet", env={"LIVERSEG_MODEL": str(small_model_path)})
    assert chosen.returncode == 0, chosen.stderr
    assert run("--help").returncode == 0


@pytest.fixture(scope="module")
def synthetic_cases(tmp_path_factory):
    """Three small labelled 'CT' volumes: a bright ellipsoid organ in noisy tissue."""
    root = tmp_path_factory.mktemp("cases")
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(np.arange(48), np.arange(48), np.arange(24), indexing="ij")
    for i in range(3):
        organ = ((x - 22 - i) / 14.0) ** 2 + ((y - 25) / 12.0) ** 2 + ((z - 12 + i) / 8.0) ** 2 < 1
        ct = np.where(organ, 120, -20) + rng.normal(0, 25, organ.shape)
        case = root / f"case{i}"
        case.mkdir()
        affine = np.diag([2.0, 2.0, 3.0, 1.0])
        liverseg.write_image(case / "ct.nii.gz", ct.astype(np.int16), affine)
        liverseg.write_image(case / "liver.nii.gz", organ.astype(np.uint8), affine)
    return root


TRAIN_ARGS = ["--arch", "small", "--spacing", "4", "4", "4", "--patch", "16", "16", "12", "--iterations-per-epoch", "3",
              "--threads", "2", "--quiet"]


def test_train_defaults_are_pythons_default_preprocessing(synthetic_cases, tmp_path):
    """One fact in one place: the model grid and HU mapping `liverseg train` writes without
    --spacing (Swift's Preprocessing.default) equal liverseg.model_file.DEFAULT_PREPROCESSING."""
    args = [a for a in TRAIN_ARGS]
    del args[args.index("--spacing"):args.index("--spacing") + 4]
    result = run("train", "--data", synthetic_cases, *args, "--epochs", "1", "--iterations-per-epoch", "1",
                 "--out", tmp_path / "d.safetensors")
    assert result.returncode == 0, result.stderr
    written = liverseg.Model(tmp_path / "d.safetensors").metadata["preprocessing"]
    assert written == liverseg.model_file.DEFAULT_PREPROCESSING


def test_train_writes_model_log_and_resumes_exactly(synthetic_cases, tmp_path):
    straight = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "3", "--out", tmp_path / "a.safetensors",
                   "--log", tmp_path / "a.csv", "--curves", tmp_path / "a.png")
    assert straight.returncode == 0, straight.stderr
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    first = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "2", "--out", tmp_path / "b.safetensors",
                "--log", tmp_path / "b.csv")
    assert first.returncode == 0, first.stderr
    resumed = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "3", "--out", tmp_path / "b.safetensors",
                  "--log", tmp_path / "b.csv", "--resume", tmp_path / "b.safetensors.checkpoint")
    assert resumed.returncode == 0, resumed.stderr
    from safetensors.numpy import load_file
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b.csv").read_text().splitlines()
    assert log[0].startswith("epoch,seconds,loss,main,branch1,branch2") and [r.split(",")[0] for r in log[1:]] == ["1", "2", "3"]
    model = liverseg.Model(tmp_path / "a.safetensors")
    assert model.metadata["provenance"]["epochs"] == 3 and model.info["conv_channels"] == [4, 4, 8, 16, 16, 16]
    # A finished run resumed again trains nothing and writes the same model file again.
    finished_bytes = (tmp_path / "b.safetensors").read_bytes()
    (tmp_path / "b.safetensors").unlink()
    again = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "3", "--out", tmp_path / "b.safetensors",
                "--log", tmp_path / "b.csv", "--resume", tmp_path / "b.safetensors.checkpoint")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "b.safetensors").read_bytes() == finished_bytes
    assert (tmp_path / "b.csv").read_text().splitlines() == log
    bad = run("train", "--data", tmp_path / "nowhere", *TRAIN_ARGS, "--out", tmp_path / "c.safetensors")
    assert bad.returncode == 65 and "neither CT,MASK nor a folder" in bad.stderr


@pytest.mark.parametrize("augmentation", ["elastic", "lesions"])
def test_train_resumes_only_with_its_augmentation(synthetic_cases, tmp_path, augmentation):
    """A checkpoint records its spatial augmentation: resuming an elastic (or lesions) run
    without its --augmentation is refused (it would silently train on with another recipe)."""
    out = tmp_path / "e.safetensors"
    first = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "1", "--augmentation", augmentation,
                "--out", out)
    assert first.returncode == 0, first.stderr
    checkpoint = tmp_path / "e.safetensors.checkpoint"
    other = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "2", "--out", out, "--resume", checkpoint)
    assert other.returncode != 0 and "another spatial augmentation" in other.stderr, other.stderr
    same = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "2", "--augmentation", augmentation,
               "--out", out, "--resume", checkpoint)
    assert same.returncode == 0, same.stderr
    assert liverseg.Model(out).metadata["provenance"]["augmentation"] == augmentation


def test_leave_one_out_writes_table_1(synthetic_cases, tmp_path):
    result = run("loo", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "1", "--crf-mu1", "3",
                 "--crf-theta-beta", "15", "--crf-mode", "slice2d", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:5]]
    assert rows == ["3D-CNN", "3D-DSN", "3D-CNN+CRF", "3D-DSN+CRF"]
    table = (tmp_path / "table.csv").read_text().splitlines()
    assert table[0] == "method,VOE[%],VD[%],AvgD[mm],RMSD[mm],MaxD[mm],Dice" and len(table) == 5
    folds = list(csv.DictReader((tmp_path / "folds.csv").open()))
    assert len(folds) == 3 * 4 and {row["crf_mode"] for row in folds} == {"slice2d"}
    # The collapse check: each run's training-case Dice, recomputed here from its model file.
    cases = sorted(synthetic_cases.iterdir())
    collapsed = []
    for row in folds[::2]:
        k, arm = int(row["fold"]), row["method"]
        model = liverseg.Model(tmp_path / f"fold{k}-{arm}.safetensors")
        dice = []
        for case in cases[:k - 1] + cases[k:]:
            ct = nib.load(case / "ct.nii.gz")
            mask = model.segment(np.asarray(ct.dataobj), affine=ct.affine, crf=False) > 0
            truth = np.asarray(nib.load(case / "liver.nii.gz").dataobj) > 0
            dice.append(2 * np.sum(mask & truth) / (np.sum(mask) + np.sum(truth)))
        assert float(row["training_dice"]) == pytest.approx(np.mean(dice), abs=1e-4)
        assert row["collapsed"] == ("yes" if np.mean(dice) < 0.5 else "no")
        if row["collapsed"] == "yes":
            collapsed.append(f"fold {k} {arm}")
    summary = (tmp_path / "table.txt").read_text()
    assert "collapsed runs (mean training-case Dice < 0.5): " + (", ".join(collapsed) or "none") in summary
    markdown = (tmp_path / "table.md").read_text().splitlines()
    assert markdown[0].startswith("| method |") and len(markdown) == 2 + 4
    for md_row, csv_row in zip(markdown[2:], table[1:]):
        cells, values = md_row.strip("| ").split(" | "), csv_row.split(",")
        assert cells[0] == values[0]
        assert [float(c) for c in cells[1:]] == pytest.approx([float(v) for v in values[1:]], abs=0.0051)
        assert len(cells[-1].split(".")[1]) == 3, "Dice to 3 decimals"
    assert sorted(p.name for p in tmp_path.glob("fold*.safetensors")) == sorted(
        f"fold{k}-{m}.safetensors" for k in (1, 2, 3) for m in ("3D-CNN", "3D-DSN"))
    assert all((tmp_path / f"fold{k}-curves.png").read_bytes().startswith(b"\x89PNG") for k in (1, 2, 3))
    # Run again with more epochs: every fold continues from its checkpoint, its log grows.
    again = run("loo", "--data", synthetic_cases, *TRAIN_ARGS[:-1], "--epochs", "2", "--crf-mu1", "3",
                "--crf-theta-beta", "15", "--out", tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("resuming after epoch 1") == 6
    for k in (1, 2, 3):
        for m in ("3D-CNN", "3D-DSN"):
            log = (tmp_path / f"fold{k}-{m}.csv").read_text().splitlines()
            assert [row.split(",")[0] for row in log[1:]] == ["1", "2"]
            assert liverseg.Model(tmp_path / f"fold{k}-{m}.safetensors").metadata["provenance"]["epochs"] == 2


def test_train_logs_the_validation_dice_of_its_model(synthetic_cases, tmp_path):
    """The validation Dice `train --val` logs is the Dice (numpy) of the model it writes,
    segmenting the validation case without the CRF. A trained fold (its committed checkpoint,
    one more step at a negligible learning rate) makes the comparison non-trivial: networks
    trained from scratch in a test's budget segment nothing at the 0.5 threshold."""
    fold = ROOT / "models" / "training" / "s3-seed1-loo-totalseg-20slices"
    ct_path, mask_path = require_data("totalseg-example/ct-20slices.nii.gz"), require_data("totalseg-example/liver-20slices.nii.gz")
    result = run("train", "--data", f"{synthetic_cases}/case0/ct.nii.gz,{synthetic_cases}/case0/liver.nii.gz", "--val", f"{ct_path},{mask_path}",
                 "--arch", "paper", "--spacing", "3", "3", "3", "--patch", "16", "16", "12", "--seed", "1",
                 "--augmentation", "anatomical", "--iterations-per-epoch", "1", "--lr", "1e-12", "--threads", "2", "--quiet",
                 "--epochs", str(checkpoint_epochs(fold) + 1), "--resume", fold / "model.safetensors.checkpoint",
                 "--out", tmp_path / "m.safetensors", "--log", tmp_path / "log.csv")
    assert result.returncode == 0, result.stderr
    logged = float(list(csv.DictReader(open(tmp_path / "log.csv")))[-1]["validation_dice"])
    ct = nib.load(ct_path)
    mask = liverseg.Model(tmp_path / "m.safetensors").segment(np.asarray(ct.dataobj), affine=ct.affine, crf=False) > 0
    truth = np.asarray(nib.load(mask_path).dataobj) > 0
    dice = 2 * np.sum(mask & truth) / (np.sum(mask) + np.sum(truth))
    assert dice > 0.8
    assert logged == pytest.approx(dice, abs=5e-5)


def test_leave_one_out_rejects_unknown_crf_mode_before_training(synthetic_cases, tmp_path):
    result = run("loo", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "1", "--crf-mode", "3d", "--out", tmp_path)
    assert result.returncode == 65 and "--crf-mode must be slice2d or volume3d" in result.stderr
    assert not list(tmp_path.glob("fold*"))


def test_train_intensity_augmentation_options(synthetic_cases, tmp_path):
    good = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "1", "--hu-shift=-70,30", "--hu-scale", "0.9,1.1",
               "--out", tmp_path / "a.safetensors")
    assert good.returncode == 0, good.stderr
    provenance = liverseg.Model(tmp_path / "a.safetensors").metadata["provenance"]
    assert provenance["hu_shift"] == [-70, 30] and provenance["hu_scale"] == [0.9, 1.1]
    for bad in (["--hu-shift", "30,-70"], ["--hu-scale", "0,1"], ["--hu-shift", "x"]):
        result = run("train", "--data", synthetic_cases, *TRAIN_ARGS, "--epochs", "1", *bad, "--out", tmp_path / "b.safetensors")
        assert result.returncode == 65 and "--hu-" in result.stderr, result.stderr
        assert not (tmp_path / "b.safetensors").exists()


def test_curves_plots_two_logs(tmp_path):
    for name, losses in (("dsn", [0.9, 0.5, 0.3, 0.2]), ("cnn", [0.9, 0.8, 0.6, 0.5])):
        rows = "".join(f"{e + 1},1.0,{l},{l},0,0,\n" for e, l in enumerate(losses))
        (tmp_path / f"{name}.csv").write_text("epoch,seconds,loss,main,branch1,branch2,validation_dice\n" + rows)
    result = run("curves", tmp_path / "dsn.csv", tmp_path / "cnn.csv", "--out", tmp_path / "c.png")
    assert result.returncode == 0, result.stderr
    assert png_size(tmp_path / "c.png") == (640, 400)
    data = Path(tmp_path / "c.png").read_bytes()
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8:start - 4])[0]
    raw = zlib.decompress(data[start:start + length])
    pixels = np.frombuffer(raw, np.uint8).reshape(400, 1 + 640 * 3)[:, 1:].reshape(400, 640, 3)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert (220, 40, 40) in colours and (40, 90, 220) in colours   # one line per log
    assert run("curves", tmp_path / "dsn.csv", "--column", "nope", "--out", tmp_path / "d.png").returncode == 65


def test_version_is_the_headers():
    from test_consumers import header_version
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == header_version()


def test_info_prints_spacing_as_written_and_json_keeps_every_digit():
    ct = require_data("ircadb1-17/ct.nii.gz")
    text = run("info", ct)
    assert text.returncode == 0, text.stderr
    assert re.search(r"^spacing_mm +\[0\.743, 0\.743, 1\.6\]$", text.stdout, re.MULTILINE), text.stdout
    assert "[[-0.743, 0, 0, 0], [0, -0.743, 0, 0], [0, 0, 1.6, 0], [0, 0, 0, 1]]" in text.stdout
    fields = json.loads(run("info", ct, "--json").stdout)
    assert fields["spacing_mm"] == [float(np.float32(0.743))] * 2 + [float(np.float32(1.6))]


def expected_statistics(ct, affine, mask):
    """What --statistics must report, computed here with numpy and scipy."""
    from scipy import ndimage
    inside = ct[mask > 0].astype(np.float64)
    index = np.argwhere(mask > 0)
    lower, upper = index.min(axis=0), index.max(axis=0)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    corners = np.array([[(lower, upper)[(c >> a) & 1][a] for a in range(3)] + [1] for c in range(8)], dtype=np.float64)
    ras = (affine @ corners.T)[:3]
    return {"voxels": len(inside), "volume_ml": len(inside) * np.prod(spacing) / 1000, "hu_mean": inside.mean(),
            "hu_sd": inside.std(), "hu_median": np.median(inside), "components": ndimage.label(mask > 0)[1],
            "bounding_box": {"min_voxel": lower.tolist(), "max_voxel": upper.tolist(),
                             "extent_mm": ((upper - lower + 1) * spacing).tolist(),
                             "ras_min_mm": ras.min(axis=1).tolist(), "ras_max_mm": ras.max(axis=1).tolist()}}


def assert_statistics(report, expected):
    for key in ("voxels", "components"):
        assert report[key] == expected[key], key
    for key in ("volume_ml", "hu_mean", "hu_sd", "hu_median"):
        assert report[key] == pytest.approx(expected[key], rel=1e-9), key
    for key, value in expected["bounding_box"].items():
        assert report["bounding_box"][key] == pytest.approx(value, abs=1e-9), key


def test_batch_segments_every_case_reports_failures_and_statistics(tmp_path, small_model_path, small_model):
    """Three cases in one run: a real CT, a mask given as CT (segmented, with warnings) and
    a broken file (reported, the batch goes on, the exit status says so)."""
    ct_path = require_data("totalseg-example/ct-3mm.nii.gz")
    mask_path = require_data("totalseg-example/liver-3mm.nii.gz")
    (tmp_path / "broken.nii").write_bytes(b"\x5c\x01" + b"\0" * 100)
    out = tmp_path / "out" / "nested"
    result = run("segment", ct_path, mask_path, tmp_path / "broken.nii", "-o", out, "--model", small_model_path,
                 "--postprocess", "none", "--no-crf", "--statistics", tmp_path / "stats.json")
    assert result.returncode == 65, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ct-3mm.nii.gz", "liver-3mm.nii.gz"]
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"liverseg: {tmp_path / 'broken.nii'}: ") for line in lines), result.stderr
    assert lines[-1] == f"liverseg: 1 of 3 cases failed: {tmp_path / 'broken.nii'}"
    warnings = [line for line in lines if line.startswith("liverseg: warning: ")]
    assert len(warnings) == 2 and all(str(mask_path) in w for w in warnings), warnings
    assert "not CT in Hounsfield units?" in warnings[0] and "only 2 distinct values" in warnings[1]
    assert result.stdout.splitlines()[-1] == f"2 of 3 cases segmented into {out}"

    reports = json.loads((tmp_path / "stats.json").read_text())
    assert [r["input"] for r in reports] == [str(ct_path), str(mask_path), str(tmp_path / "broken.nii")]
    assert "error" in reports[2] and "mask" not in reports[2]
    for report, path in zip(reports[:2], (ct_path, mask_path)):
        ct, geometry = liverseg.read_image(path)
        expected = small_model.segment(ct, affine=geometry.affine, postprocess=False, crf=False)
        written, written_geometry = liverseg.read_image(out / path.name)
        assert np.array_equal(written, expected) and np.array_equal(written_geometry.affine, geometry.affine)
        assert report["mask"] == str(out / path.name)
        assert_statistics(report, expected_statistics(ct, geometry.affine, expected))
    assert reports[0]["components"] > 1 and reports[0]["warnings"] == [] and len(reports[1]["warnings"]) == 2


def test_batch_over_a_folder_and_single_case_statistics(tmp_path, small_model_path, small_model, synthetic_cases):
    inputs = tmp_path / "in"
    inputs.mkdir()
    ct, geometry = liverseg.read_image(synthetic_cases / "case0" / "ct.nii.gz")
    liverseg.write_image(inputs / "a.nrrd", ct, geometry)
    liverseg.write_image(inputs / "b.mha", ct[:, :, :8], geometry)
    (inputs / "notes.txt").write_text("not an image")
    result = run("segment", "-i", inputs, "-o", tmp_path / "out", "--model", small_model_path, "--quiet")
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nrrd", "b.mha"]
    assert np.array_equal(liverseg.read_image(tmp_path / "out" / "a.nrrd")[0], small_model.segment(ct, affine=geometry.affine))
    # Warnings are shown even with --quiet: these "CTs" have no air, and b has 8 slices.
    assert "b.mha: only 8 slices head to foot" in result.stderr and result.stderr.count("not CT in Hounsfield units?") == 2

    single = run("segment", inputs / "a.nrrd", tmp_path / "mask.nii.gz", "--model", small_model_path,
                 "--statistics", tmp_path / "a.json")
    assert single.returncode == 0, single.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    mask = liverseg.read_image(tmp_path / "mask.nii.gz")[0]
    assert report["input"] == str(inputs / "a.nrrd") and report["mask"] == str(tmp_path / "mask.nii.gz")
    assert_statistics(report, expected_statistics(ct, geometry.affine, mask))
    assert report["components"] == 1   # the default post-processing keeps the largest component


def test_batch_refusals_come_before_any_computation(tmp_path, small_model_path):
    ct = require_data("totalseg-example/ct-3mm.nii.gz")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "ct.nii").write_bytes(b"")
    cases = [
        (["segment", ct, "-o", tmp_path / "out", "--probability", tmp_path / "p.nii.gz"], 64, "--probability"),
        (["segment", ct, "-o", tmp_path / "out", "--preview", tmp_path / "p.png"], 64, "--preview"),
        (["segment", "-i", tmp_path / "a"], 64, "--input-dir needs --output-dir"),
        (["segment", ct, tmp_path / "m.nii.gz", tmp_path / "n.nii.gz"], 64, "--output-dir"),
        (["segment", tmp_path / "a" / "ct.nii", tmp_path / "b" / "ct.nii", "-o", tmp_path / "out"], 65, "both write"),
        (["segment", "-i", tmp_path / "a", "-o", tmp_path / "a"], 65, "would replace it"),
        (["segment", "-i", tmp_path / "nowhere", "-o", tmp_path / "out"], 74, "nowhere"),
        (["segment", ct, "-o", tmp_path / "out", "--statistics", tmp_path / "no_dir" / "s.json"], 74, "no_dir"),
    ]
    for args, code, message in cases:
        result = run(*args, "--model", small_model_path)
        assert result.returncode == code and message in result.stderr, (args, result.returncode, result.stderr)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
