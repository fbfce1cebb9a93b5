"""liverseg.batch on a two-worker Dask cluster over real training cases: each mask equals what
the plain Python API segments in this process (CT read with nibabel), the CSV's Dice and VOE
equal numpy's on the written masks, a broken file fails alone, the model is loaded once per
worker (counted by wrapping liverseg.Model in each worker), and the statistics equal the
command's --statistics."""
import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import DATA, ROOT, require_data
import liverseg

try:
    import distributed
except ImportError:
    pytest.fail("Dask distributed is not installed: tools/setup.sh test installs it", pytrace=False)
from liverseg import batch  # noqa: E402

TOTALSEG = "totalseg-example"
# (input, reference) of the cases; the DICOM series is the 20-slice CT's own slices.
CASES = [(f"{TOTALSEG}/ct-20slices.nii.gz", f"{TOTALSEG}/liver-20slices.nii.gz"),
         (f"{TOTALSEG}/ct-3mm.nii.gz", f"{TOTALSEG}/liver-3mm.nii.gz"),
         ("ircadb1-17/ct.nii.gz", "ircadb1-17/liver.nii.gz"),
         (f"{TOTALSEG}/dicom-20slices", f"{TOTALSEG}/liver-20slices.nii.gz")]


def nifti(path):
    """(array [x, y, z] with NIfTI scaling applied, affine) read by nibabel, not liverseg."""
    image = nib.load(str(path))
    return np.asanyarray(image.dataobj), image.affine


@pytest.fixture(scope="module")
def client():
    # Worker processes are spawned: they find the package and library through the environment.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bindings" / "python")] + ([saved] if saved else []))
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            yield client
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def start_counting_model_loads():
    """Runs in each worker: wraps liverseg.Model.__init__ (every load, from a path, from
    bytes or by unpickling, goes through it) with a counter."""
    import liverseg
    if not hasattr(liverseg.Model, "loads_counted"):
        load = liverseg.Model.__init__

        def counting_load(self, *args, **kwargs):
            liverseg.Model.loads_counted += 1
            load(self, *args, **kwargs)
        liverseg.Model.__init__ = counting_load
    liverseg.Model.loads_counted = 0


def model_loads_counted():
    import liverseg
    return liverseg.Model.loads_counted


@pytest.fixture(scope="module")
def run(client, tmp_path_factory):
    """One batch: the four cases and a truncated .nii.gz. Returns (rows, CSV rows, loads per worker)."""
    tmp = tmp_path_factory.mktemp("batch")
    broken = tmp / "broken" / "ct.nii.gz"
    broken.parent.mkdir()
    broken.write_bytes(require_data(CASES[0][0]).read_bytes()[:150_000])
    inputs = [str(require_data(case)) for case, _ in CASES] + [str(broken)]
    references = {str(DATA / case): str(require_data(ref)) for case, ref in CASES}
    client.run(start_counting_model_loads)
    rows = batch.segment_batch(inputs, tmp / "out", client=client, references=references, csv=tmp / "cases.csv")
    loads = client.run(model_loads_counted)
    with open(tmp / "cases.csv", newline="") as f:
        table = list(csv.DictReader(f))
    return rows, table, loads


def test_every_case_but_the_broken_one_is_segmented(run):
    rows, table, _ = run
    assert [row["status"] for row in rows] == ["ok"] * len(CASES) + ["failed"], [row["error"] for row in rows]
    assert [row["input"] for row in table] == [row["input"] for row in rows]
    failed = table[-1]
    assert failed["status"] == "failed" and "truncated" in failed["error"], failed
    assert not os.path.exists(failed["output"]) and failed["dice"] == ""
    assert all(row["error"] == "" and row["dice"] != "" for row in table[:-1])


def test_masks_equal_the_python_api_in_process(run):
    rows, _, _ = run
    model = liverseg.Model()
    for (case, _), row in zip(CASES, rows):
        # The DICOM series holds the 20-slice NIfTI's slices: segmenting that file is the independent path.
        source = f"{TOTALSEG}/ct-20slices.nii.gz" if case.endswith("dicom-20slices") else case
        ct, affine = nifti(DATA / source)
        expected = model.segment(ct, affine=affine)
        mask, mask_affine = nifti(row["output"])
        assert row["output"].endswith(".nii.gz") and np.allclose(mask_affine, affine, atol=1e-4), case
        assert mask.dtype == np.uint8 and expected.sum() > 1000, case
        assert np.array_equal(mask, expected), (case, int((mask != expected).sum()))


def test_csv_dice_and_voe_equal_numpy_on_the_written_masks(run):
    _, table, _ = run
    for (_, reference), row in zip(CASES, table):
        a = nifti(row["output"])[0] != 0
        b = nifti(DATA / reference)[0] != 0
        overlap = np.logical_and(a, b).sum()
        dice = 2 * overlap / (a.sum() + b.sum())
        voe = 100 * (1 - overlap / np.logical_or(a, b).sum())
        assert 0.5 < dice < 1
        assert float(row["dice"]) == pytest.approx(dice, rel=1e-12, abs=0), row["input"]
        assert float(row["voe"]) == pytest.approx(voe, rel=1e-12, abs=0), row["input"]
        assert float(row["volume_ml"]) == pytest.approx(a.sum() * np.prod(nib.load(row["output"]).header.get_zooms()) / 1000)


def test_model_is_loaded_once_per_worker(run, client):
    rows, _, loads = run
    workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2 and set(loads) == workers
    # Five tasks on two workers: a load per task (or per unpickled Model) would count more.
    assert loads == {worker: 1 for worker in workers}, loads
    assert {row["worker"] for row in rows} <= workers


def cli(*args):
    result = subprocess.run([os.environ.get("LIVERSEG_CLI", str(ROOT / ".build/release/liverseg-cli")), *map(str, args)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_statistics_equal_the_command_line(run, tmp_path):
    """The batch's statistics columns and liverseg.liver_statistics equal the command's
    --statistics (one library routine, three front ends; test_statistics.py checks it against
    numpy), once on the batch's row and once on a raw mask with several components."""
    rows, _, _ = run
    ct_path = require_data(CASES[1][0])
    cli("segment", ct_path, tmp_path / "cli.nii.gz", "--statistics", tmp_path / "cli.json", "--quiet")
    expected = json.loads((tmp_path / "cli.json").read_text())
    row = rows[1]
    assert np.array_equal(nifti(tmp_path / "cli.nii.gz")[0], nifti(row["output"])[0])
    box = expected["bounding_box"]
    flat = {"voxels": expected["voxels"], "volume_ml": expected["volume_ml"], "components": expected["components"],
            "hu_mean": expected["hu_mean"], "hu_sd": expected["hu_sd"], "hu_median": expected["hu_median"],
            **{f"bbox_{e}_{a}": v for e in ("min", "max") for a, v in zip("ijk", box[f"{e}_voxel"])},
            **{f"extent_mm_{a}": v for a, v in zip("ijk", box["extent_mm"])},
            **{f"ras_{e}_mm_{a}": v for e in ("min", "max") for a, v in zip("ras", box[f"ras_{e}_mm"])}}
    for name, value in flat.items():
        assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name

    cli("segment", ct_path, tmp_path / "raw.nii.gz", "--postprocess", "none", "--statistics", tmp_path / "raw.json", "--quiet")
    expected = json.loads((tmp_path / "raw.json").read_text())
    ct, geometry = liverseg.read_image(ct_path)
    mask, _ = liverseg.read_image(tmp_path / "raw.nii.gz")
    stats = liverseg.liver_statistics(ct, mask, geometry)
    assert expected["components"] > 1 and stats["components"] == expected["components"]
    for name in ("voxels", "volume_ml", "hu_mean", "hu_sd", "hu_median"):
        assert stats[name] == pytest.approx(expected[name], rel=1e-9), name
    for name, value in expected["bounding_box"].items():
        assert stats["bounding_box"][name] == pytest.approx(value, rel=1e-9, abs=1e-9), name


def test_output_paths_mirror_the_inputs_below_their_common_folder(tmp_path):
    assert batch.output_paths(["/d/a/ct.nii.gz", "/d/b/ct.nii.gz", "/d/b/dicom"], "/out") == \
        ["/out/a/ct.nii.gz", "/out/b/ct.nii.gz", "/out/b/dicom.nii.gz"]
    assert batch.output_paths(["/d/ct.nrrd", "/d/s.mha"], "/out") == ["/out/ct.nrrd", "/out/s.mha"]
    assert batch.output_paths(["/d/ct.nii.gz", "/d/x.mhd"]) == ["/d/ct_liver.nii.gz", "/d/x_liver.mhd"]
    with pytest.raises(ValueError, match="replace"):
        batch.output_paths(["/d/ct.nii.gz"], "/d")
    assert batch.reference_from_pattern("/d/a/ct-3mm.nii.gz", "{dir}/{stem}_ref{ext}") == "/d/a/ct-3mm_ref.nii.gz"


def test_command_line_with_a_reference_pattern(run, tmp_path):
    """`python -m liverseg.batch` on its own local cluster: the mask, the CSV row and the exit
    status (1: a case failed)."""
    rows, _, _ = run
    for case, source in [("a/ct.nii.gz", CASES[0][0]), ("a/liver.nii.gz", CASES[0][1])]:
        (tmp_path / "in" / case).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(require_data(source), tmp_path / "in" / case)
    (tmp_path / "in" / "b").mkdir()
    (tmp_path / "in" / "b" / "ct.nii.gz").write_bytes(b"not a NIfTI file")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "bindings" / "python"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "liverseg.batch", tmp_path / "in/a/ct.nii.gz", tmp_path / "in/b/ct.nii.gz",
                             "-o", tmp_path / "out", "--workers", "1", "--reference-pattern", "{dir}/liver.nii.gz"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "1 of 2 cases segmented" in result.stderr
    with open(tmp_path / "out" / "liverseg-batch.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["status"] for row in table] == ["ok", "failed"]
    assert table[0]["reference"] == str(tmp_path / "in/a/liver.nii.gz")
    assert float(table[0]["dice"]) == rows[0]["dice"]
    assert np.array_equal(nifti(tmp_path / "out/a/ct.nii.gz")[0], nifti(rows[0]["output"])[0])
    assert not (tmp_path / "out/b/ct.nii.gz").exists()


def test_a_model_no_worker_can_load_fails_each_case(client, tmp_path):
    """Runs last: it replaces the workers' model plugin."""
    rows = batch.segment_batch([str(require_data(CASES[0][0]))], tmp_path, client=client, model=tmp_path / "missing.safetensors")
    assert rows[0]["status"] == "failed" and "no model on worker" in rows[0]["error"] and "missing.safetensors" in rows[0]["error"]
