#!/usr/bin/env python3
"""The leave-one-out table of the bundled recipe: each training case scored by the fold model
that never saw it (`tools/train_bundled.sh loo-CASE models/training/loo-CASE`; the IRCADb-17
fold is run V in models/training/V). A fold counts once its log reaches --epochs; unfinished
folds are listed with the epoch they reached.

    PYTHONPATH=bindings/python LIVERSEG_LIBRARY=.build/release/libliverseg.so \\
        python3 tools/loo_table.py [--thresholds 0.3,0.4,0.5]

Prints the held-out measures with the defaults and with the model's CRF. --thresholds adds
the held-out mean Dice for each probability threshold: the cross-validated way to choose the
threshold (the one with the highest mean over the folds), never the external cases.
Only training cases are read.
"""
import argparse
import csv
import subprocess
import sys
from pathlib import Path

import liverseg
from evaluate_model import TABLE_HEADER, print_mean, score_case

ROOT = Path(__file__).resolve().parent.parent


def training_cases():
    """(name, CT path, mask path) of each training case, as tools/train_bundled.sh lists them."""
    listing = subprocess.run([str(ROOT / "tools" / "train_bundled.sh"), "cases"], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
    cases = []
    for line in listing.splitlines():
        name, pair = line.split(" ", 1)
        ct, mask = pair.split(",")
        cases.append((name, ROOT / ct, ROOT / mask))
    return cases


def fold_folder(name):
    return ROOT / "models" / "training" / ("V" if name == "ircadb1-17" else f"loo-{name}")


def epochs_done(folder):
    log = folder / "log.csv"
    if not log.exists():
        return 0
    rows = list(csv.DictReader(log.open()))
    return int(rows[-1]["epoch"]) if rows else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=300, help="the epoch a finished fold reached")
    ap.add_argument("--thresholds", help="comma-separated probability thresholds to compare")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    finished = []
    for name, ct, mask in training_cases():
        done = epochs_done(fold_folder(name))
        if done >= args.epochs:
            finished.append((name, ct, mask))
        else:
            print(f"fold {name}: epoch {done} of {args.epochs}, not scored")
    if not finished:
        sys.exit("no finished fold")
    models = {name: liverseg.Model(fold_folder(name) / "model.safetensors") for name, _, _ in finished}
    settings = [("defaults", {}), ("with the model's CRF", {"crf": True})]
    if args.thresholds:
        settings += [(f"threshold {t}", {"threshold": float(t)}) for t in args.thresholds.split(",")]
    for label, options in settings:
        print(f"\nheld-out case, {label}\n{TABLE_HEADER}")
        print_mean([score_case(models[name], name, ct, mask, threads=args.threads, **options)
                    for name, ct, mask in finished])


if __name__ == "__main__":
    main()
