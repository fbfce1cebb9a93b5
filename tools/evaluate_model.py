#!/usr/bin/env python3
"""Segments labelled cases with a model and prints a Markdown table of the SLiver07 measures
(Dice, VOE, VD, AvgD, MaxD) and volumes, one row per case, with the library's defaults
(post-processing on) unless told otherwise. Nothing but the measures is written, so it can
be run on data that must not be copied.

    PYTHONPATH=bindings/python LIVERSEG_LIBRARY=.build/release/libliverseg.so \\
        python3 tools/evaluate_model.py --model models/liver-default.safetensors \\
        ../shared/data/ircadb1-01 ../shared/data/totalseg-example/ct-3mm.nii.gz,../shared/data/totalseg-example/liver-3mm.nii.gz

A case is a folder holding ct.nii.gz and liver.nii.gz, or CT,MASK. --mirror feeds each CT
mirrored left–right with its affine unchanged (so the liver appears on the patient's left)
and scores against the equally mirrored reference: a model that knows left from right
must score lower there.
"""
import argparse
import functools
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

import liverseg


def case_paths(text):
    """(name, CT path, mask path) of a case argument."""
    if "," in text:
        ct, mask = text.split(",")
        return Path(ct).name.split(".")[0], Path(ct), Path(mask)
    folder = Path(text)
    return folder.name, folder / "ct.nii.gz", folder / "liver.nii.gz"


def left_right_axis(affine):
    """The array axis that runs most along R–L."""
    return int(np.argmax(np.abs(affine[0, :3])))


TABLE_HEADER = ("| case | Dice | VOE % | VD % | AvgD mm | MaxD mm | segmented / reference ml | s |\n"
                "|---|---|---|---|---|---|---|---|")


@functools.lru_cache(maxsize=8)
def load_case(ct_path, mask_path):
    """(affine, CT in HU as float32, reference mask as uint8) of one case, read once: a
    leave-one-out table scores the same five cases under each of its settings."""
    image = nib.load(str(ct_path))
    ct = np.asarray(image.dataobj, dtype=np.float32)
    reference = (np.asarray(nib.load(str(mask_path)).dataobj) > 0).astype(np.uint8)
    ct.flags.writeable = reference.flags.writeable = False  # shared by every later call
    return image.affine, ct, reference


def score_case(model, name, ct_path, mask_path, mirror=False, **segment_options):
    """Segments one case with `segment_options` (Model.segment's keywords), prints its table
    row and returns the measures as a dict."""
    affine, ct, reference = load_case(str(ct_path), str(mask_path))
    if mirror:
        axis = left_right_axis(affine)
        ct, reference = np.flip(ct, axis).copy(), np.flip(reference, axis).copy()
    start = time.perf_counter()
    mask = model.segment(ct, affine=affine, **segment_options)
    return score_mask(name, mask, reference, affine, time.perf_counter() - start)


def score_mask(name, mask, reference, affine, seconds):
    """Prints and returns the table row of `mask` against `reference` (affine: the CT's)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    m = liverseg.evaluate(mask, reference, spacing)
    ml = float(np.prod(spacing)) / 1000
    row = dict(case=name, dice=float(m["dice"]), voe=float(m["voe"]), vd=float(m["vd"]), avg_d=float(m["avg_d"]),
               max_d=float(m["max_d"]), segmented_ml=float(mask.sum() * ml), reference_ml=float(reference.sum() * ml),
               seconds=seconds)
    print_row(row)
    return row


def print_row(row):
    """Prints a case's table row."""
    print(f"| {row['case']} | {row['dice']:.3f} | {row['voe']:.1f} | {row['vd']:+.1f} | {row['avg_d']:.1f} | "
          f"{row['max_d']:.1f} | {row['segmented_ml']:.0f} / {row['reference_ml']:.0f} | {row['seconds']:.1f} |",
          flush=True)


def print_mean(rows):
    """Prints and returns the mean of each measure over `rows`."""
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("dice", "voe", "vd", "avg_d", "max_d")}
    print(f"| mean | {mean['dice']:.3f} | {mean['voe']:.1f} | {mean['vd']:+.1f} | {mean['avg_d']:.1f} | "
          f"{mean['max_d']:.1f} | | |")
    return mean


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--model", required=True)
    ap.add_argument("--crf", action=argparse.BooleanOptionalAction, default=None,
                    help="refine with the model file's CRF (the library's default: on) or not (--no-crf)")
    ap.add_argument("--no-postprocess", action="store_true", help="the raw thresholded (or CRF) mask")
    ap.add_argument("--mirror", action="store_true", help="mirror each CT left-right, affine unchanged")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()

    model = liverseg.Model(args.model)
    print(TABLE_HEADER)
    rows = [score_case(model, *case_paths(text), mirror=args.mirror, crf=args.crf,
                       postprocess=not args.no_postprocess, threads=args.threads) for text in args.cases]
    mean = print_mean(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(model=args.model, crf=args.crf, mirror=args.mirror,
                                                   postprocess=not args.no_postprocess, rows=rows, mean=mean), indent=1))


if __name__ == "__main__":
    main()
