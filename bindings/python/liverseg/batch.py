"""Segmenting many CT images on a Dask cluster (pip install "liverseg[batch]").

    from dask.distributed import Client, LocalCluster
    from liverseg.batch import segment_batch
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        rows = segment_batch(["a/ct.nii.gz", "b/ct.nrrd", "c/dicom/"], output_dir="out", client=client,
                             reference_pattern="{dir}/liver.nii.gz", csv="out/cases.csv")

    python -m liverseg.batch IN... -o DIR [--scheduler ADDRESS | --workers N] [--csv out.csv] [--no-crf]

Each worker loads the model once (a worker plugin, set up when the batch starts and on
every worker that joins later) and segments one case per task. A case's row holds its
statistics (liverseg.liver_statistics: the fields of `liverseg segment --statistics`), the
SLiver07 measures against its reference mask when one is given (liverseg.evaluate), and
its status: a case that fails gets status "failed" and the error, and the batch goes on.

Inputs are image files (NIfTI, NRRD, MetaImage) or DICOM series folders; a folder of image
files stands for the files in it. Masks are written as uint8 0/1 on the input's grid, in
the input's format (NIfTI for DICOM), either under output_dir, mirroring the inputs' paths
below their common folder (a flat folder of inputs gives DIR/<input name>), or beside each
input as <name>_liver<extension>. Workers read the inputs and write the masks themselves:
on several machines, paths must name the same files on every one (a shared file system).
"""
from __future__ import annotations

import argparse
import csv as csv_module
import os
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

try:
    from distributed import WorkerPlugin, as_completed, default_client
except ImportError as e:  # the package itself needs numpy only
    raise ImportError('liverseg.batch needs Dask distributed: pip install "liverseg[batch]"') from e

PathLike = Union[str, "os.PathLike[str]"]

# Longest first: ".nii.gz" must win over ".gz".
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
PLUGIN_NAME = "liverseg-model"
METRICS = ("dice", "voe", "vd", "avg_d", "rms_d", "max_d", "hd95")
# One CSV row per case, in this column order; boxes are split into one column per axis.
COLUMNS = (["input", "output", "status", "error", "reference", "worker", "seconds",
            "voxels", "volume_ml", "components", "hu_mean", "hu_sd", "hu_median"]
           + [f"bbox_{end}_{axis}" for end in ("min", "max") for axis in "ijk"]
           + [f"extent_mm_{axis}" for axis in "ijk"]
           + [f"ras_{end}_mm_{axis}" for end in ("min", "max") for axis in "ras"]
           + list(METRICS))


def _extension(name: str) -> str:
    """The image extension of a file name ("" when it has none of IMAGE_EXTENSIONS)."""
    lower = name.lower()
    return next((ext for ext in IMAGE_EXTENSIONS if lower.endswith(ext)), "")


def expand_inputs(paths: Iterable[PathLike]) -> List[str]:
    """The cases named by `paths`: image files as given; a folder holding image files
    stands for those files (sorted, hidden ones skipped); any other folder is a DICOM series."""
    cases = []
    for path in map(str, paths):
        if os.path.isdir(path):
            images = sorted(name for name in os.listdir(path) if _extension(name) and not name.startswith("."))
            cases += [os.path.join(path, name) for name in images] if images else [path]
        else:
            cases.append(path)
    return cases


def _mask_name(case: str) -> str:
    """The mask file's name for a case: the input's name, NIfTI for a DICOM series."""
    name = os.path.basename(os.path.normpath(case))
    if os.path.isdir(case) or not _extension(name):
        return name + ".nii.gz"
    return name


def output_paths(cases: Sequence[str], output_dir: Optional[PathLike] = None) -> List[str]:
    """Where each case's mask goes: below output_dir, mirroring the cases' paths below their
    common folder, or beside each input as <name>_liver<extension> without output_dir.
    Raises ValueError when a mask would replace an input or two cases would share a mask."""
    absolute = [os.path.abspath(case) for case in cases]
    if output_dir is None:
        outputs = []
        for case in absolute:
            name = _mask_name(case)
            ext = _extension(name)
            outputs.append(os.path.join(os.path.dirname(case), name[:len(name) - len(ext)] + "_liver" + ext))
    else:
        common = os.path.commonpath([os.path.dirname(case) for case in absolute]) if absolute else ""
        outputs = [os.path.join(os.path.abspath(output_dir), os.path.relpath(os.path.dirname(case), common), _mask_name(case))
                   for case in absolute]
        outputs = [os.path.normpath(path) for path in outputs]
    for case, output in zip(absolute, outputs):
        if case == output:
            raise ValueError(f"the mask of {case} would replace it: choose another output folder")
    seen = {}
    for case, output in zip(absolute, outputs):
        if output in seen:
            raise ValueError(f"{seen[output]} and {case} would both write {output}")
        seen[output] = case
    return outputs


def reference_from_pattern(case: str, pattern: str) -> str:
    """The reference mask path for a case from a pattern with the fields {dir} (the case's
    folder), {name} (its file or folder name), {stem} (the name without its image
    extension) and {ext}: "{dir}/liver.nii.gz", "/refs/{stem}_seg{ext}"."""
    name = os.path.basename(os.path.normpath(case))
    ext = _extension(name)
    return pattern.format(dir=os.path.dirname(os.path.abspath(case)), name=name, stem=name[:len(name) - len(ext)], ext=ext)


def read_reference_table(path: PathLike) -> Dict[str, str]:
    """{input: reference} from a CSV file with the columns input and reference (relative
    paths are taken from the CSV's folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, newline="") as f:
        return {os.path.join(folder, row["input"]): os.path.join(folder, row["reference"]) for row in csv_module.DictReader(f)}


class ModelPlugin(WorkerPlugin):
    """Loads the model once in each worker process (when the batch registers the plugin, and
    in every worker that joins later). A model that fails to load on a worker fails that
    worker's cases with the reason, instead of the whole batch."""
    name = PLUGIN_NAME

    def __init__(self, model=None):
        from . import Model
        # A path or bytes, not a Model: a Model would be loaded again wherever it is
        # unpickled (the client, the scheduler), not just once per worker.
        if isinstance(model, Model):
            self.model_path, self.model_data = model.__reduce__()[1]
        else:
            self.model_path, self.model_data = (None if model is None else os.path.abspath(model)), None
        self.model, self.error = None, None

    def setup(self, worker):
        from . import Model
        try:
            self.model = Model(data=self.model_data) if self.model_data is not None else Model(self.model_path)
        except Exception as e:  # noqa: BLE001: reported in each of this worker's rows
            self.error = f"{type(e).__name__}: {e}"

    def teardown(self, worker):
        if self.model is not None:
            self.model.close()
            self.model = None


def segment_case(case: str, output: str, reference: Optional[str] = None, crf: Optional[bool] = None,
                 postprocess=True, threads: int = 1, model=None) -> dict:
    """Segments one case, writes its mask and returns its CSV row (a dict of COLUMNS).
    Runs on a worker with the plugin's model, or with `model` given; `crf` as Model.segment's
    (None: the library's default). Never raises: an error
    becomes status "failed" and its message."""
    from . import evaluate, read_image, write_image
    from .statistics import liver_statistics
    start = time.perf_counter()
    row = dict.fromkeys(COLUMNS, "")
    row.update(input=case, output=output, reference=reference or "")
    stage = ""
    try:
        if model is None:
            from distributed import get_worker
            worker = get_worker()
            row["worker"] = worker.address
            plugin = worker.plugins.get(PLUGIN_NAME)
            if plugin is None or plugin.model is None:
                raise RuntimeError("no model on worker " + worker.address
                                   + (f": {plugin.error}" if plugin is not None and plugin.error else ""))
            model = plugin.model
        ct, geometry = read_image(case)
        mask = model.segment(ct, affine=geometry.affine, crf=crf, postprocess=postprocess, threads=threads)
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        write_image(output, mask, geometry)
        row.update(_statistics_columns(liver_statistics(ct, mask, geometry)))
        if reference:
            stage = "reference: "  # the mask is written; the comparison failed
            truth, truth_geometry = read_image(reference)
            if truth.shape != mask.shape or not _same_grid(truth_geometry.affine, geometry.affine):
                raise ValueError(f"{reference} {truth.shape} is not on the grid of {case} {mask.shape}")
            measures = evaluate(mask, truth, geometry.spacing)
            row.update({name: measures[name] for name in METRICS})
        row["status"] = "ok"
    except Exception as e:  # noqa: BLE001: a failed case is a row, not the end of the batch
        row.update(status="failed", error=f"{stage}{type(e).__name__}: {e}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _same_grid(a, b) -> bool:
    import numpy as np
    # NIfTI stores the affine as float32: two files of one grid may differ in the last bits.
    return bool(np.allclose(a, b, rtol=0, atol=1e-4))


def _statistics_columns(stats: dict) -> dict:
    columns = {name: stats[name] for name in ("voxels", "volume_ml", "components", "hu_mean", "hu_sd", "hu_median")}
    box = stats["bounding_box"]
    if box is None:
        return columns
    for end in ("min", "max"):
        columns.update({f"bbox_{end}_{axis}": v for axis, v in zip("ijk", box[f"{end}_voxel"])})
        columns.update({f"ras_{end}_mm_{axis}": v for axis, v in zip("ras", box[f"ras_{end}_mm"])})
    columns.update({f"extent_mm_{axis}": v for axis, v in zip("ijk", box["extent_mm"])})
    return columns


def segment_batch(inputs: Iterable[PathLike], output_dir: Optional[PathLike] = None, *, client=None, model=None,
                  references: Optional[Mapping[PathLike, PathLike]] = None, reference_pattern: Optional[str] = None,
                  crf: Optional[bool] = None, postprocess=True, threads_per_case: int = 1, csv: Optional[PathLike] = None,
                  on_row=None) -> List[dict]:
    """Segments every case of `inputs` (see expand_inputs) on a Dask cluster and returns one
    row per case, in input order (dicts with the keys COLUMNS).

    client: a dask.distributed Client (default: the current one). model: None (the
    workers' default model), a model file path every worker can read, or a liverseg.Model
    (sent as its path, or as its bytes when loaded from memory). references ({input:
    reference mask}) or reference_pattern (see reference_from_pattern) add the SLiver07
    measures. crf: as Model.segment's (None: the library's default, the CRF on).
    threads_per_case: the library's threads for each case (a worker with N
    threads segments N cases at once). csv: also write the rows there. on_row(row) is
    called as each case finishes."""
    from . import _postprocess_bits
    _postprocess_bits(postprocess)  # an unknown step name fails here, not in every case
    client = client or default_client()
    cases = expand_inputs(inputs)
    outputs = output_paths(cases, output_dir)
    by_input = {os.path.abspath(k): str(v) for k, v in (references or {}).items()}
    refs = [by_input.get(os.path.abspath(case)) or (reference_from_pattern(case, reference_pattern) if reference_pattern else None)
            for case in cases]
    client.register_plugin(ModelPlugin(model), name=PLUGIN_NAME)
    futures = {client.submit(segment_case, case, output, ref, crf, postprocess, threads_per_case, pure=False): n
               for n, (case, output, ref) in enumerate(zip(cases, outputs, refs))}
    rows: List[Optional[dict]] = [None] * len(cases)
    for future in as_completed(futures):
        n = futures[future]
        try:
            rows[n] = future.result()
        except Exception as e:  # noqa: BLE001: the task itself died (its worker was lost)
            rows[n] = dict(dict.fromkeys(COLUMNS, ""), input=cases[n], output=outputs[n], reference=refs[n] or "",
                           status="failed", error=f"{type(e).__name__}: {e}")
        if on_row is not None:
            on_row(rows[n])
    if csv is not None:
        write_csv(rows, csv)
    return rows


def write_csv(rows: Sequence[dict], path: PathLike) -> None:
    """Writes the rows as CSV with the header COLUMNS (empty cells for absent values)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv_module.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (0: every case segmented, 1: some failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m liverseg.batch",
        description="Segment the liver in many CT images on a Dask cluster, one model load per worker; "
                    "writes the masks and one CSV row per case (statistics, Dice/VOE against reference masks, status).")
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files, folders of image files, DICOM series folders")
    parser.add_argument("-o", "--output-dir", help="folder for the masks (mirrors the inputs below their common folder); "
                                                   "default: beside each input as <name>_liver<extension>")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running dask scheduler, e.g. tcp://10.0.0.5:8786")
    where.add_argument("--workers", type=int, help="start a local cluster of N worker processes (default: one per core)")
    parser.add_argument("--threads-per-worker", type=int, default=1, help="cases each local worker segments at once (default 1)")
    parser.add_argument("--threads-per-case", type=int, default=1, help="library threads for each case (default 1)")
    parser.add_argument("--csv", help="the CSV to write (default: OUTPUT_DIR/liverseg-batch.csv, else ./liverseg-batch.csv)")
    parser.add_argument("--model", help="model file, readable at this path on every worker (default: each worker's bundled model)")
    parser.add_argument("--crf", action=argparse.BooleanOptionalAction, default=None,
                        help="refine each mask with the dense CRF (the library's default: on); --no-crf thresholds instead")
    parser.add_argument("--postprocess", default="all",
                        help="all (default), none, or a comma-separated list of largest_component, fill_holes_3d, fill_holes_slices")
    refs = parser.add_mutually_exclusive_group()
    refs.add_argument("--reference-pattern", help='reference mask per input, with {dir} {name} {stem} {ext}: "{dir}/liver.nii.gz"')
    refs.add_argument("--references", metavar="CSV", help="a CSV with the columns input and reference")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    postprocess = {"all": True, "none": False}.get(args.postprocess, args.postprocess.split(","))
    csv_path = args.csv or os.path.join(args.output_dir or ".", "liverseg-batch.csv")

    from distributed import Client, LocalCluster
    if args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        cluster = LocalCluster(n_workers=args.workers or os.cpu_count() or 1, threads_per_worker=args.threads_per_worker,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    finished = []

    def report(row):
        finished.append(row)
        detail = (f"{row['volume_ml']:.1f} ml" + (f", Dice {row['dice']:.4f}" if row["dice"] != "" else "")
                  if row["status"] == "ok" else row["error"])
        print(f"{len(finished)}/{len(cases)} {row['status']} {row['input']}: {detail} ({row['seconds']} s)", file=sys.stderr)

    try:
        cases = expand_inputs(args.inputs)
        start = time.perf_counter()
        rows = segment_batch(cases, args.output_dir, client=client, model=args.model,
                             references=read_reference_table(args.references) if args.references else None,
                             reference_pattern=args.reference_pattern, crf=args.crf, postprocess=postprocess,
                             threads_per_case=args.threads_per_case, csv=csv_path, on_row=report)
        elapsed = time.perf_counter() - start
    except (ValueError, OSError) as e:
        print(f"liverseg.batch: {e}", file=sys.stderr)
        return 2
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    failed = [row for row in rows if row["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} cases segmented in {elapsed:.1f} s "
          f"({len(rows) / elapsed * 60:.1f} cases/min); rows in {csv_path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
