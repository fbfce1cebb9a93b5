#!/usr/bin/env python3
"""The leave-one-out table of the bundled recipe: each training case scored by the fold model
that never saw it (`tools/train_bundled.sh loo-CASE models/training/loo-CASE`; the IRCADb-17
fold is run V in models/training/V). A fold counts once its log reaches --epochs; unfinished
folds are listed with the epoch they reached.

    PYTHONPATH=bindings/python LIVERSEG_LIBRARY=.build/release/libliverseg.so \\
        python3 tools/loo_table.py [--thresholds 0.3,0.4,0.5]

Prints the held-out measures without the CRF and with the model's CRF (against the
former: the rule for the CRF as segment's default). The options add
settings whose held-out Dice decides a default by the written rules of docs/training.md —
the cross-validated way to choose them, never with the external cases:
  --thresholds 0.3,0.4      probability thresholds (against no CRF);
  --tau 0,0.2               fusion weights τ1 = τ2 of eq. 4 (each fold model's file with only
                            fusion.tau changed; against no CRF);
  --crf-mu1 5,10 --crf-theta-beta 10,15   a CRF grid (the rest as the model file's "crf"
                            section; against the model's CRF).
  --against-prefix ''        the same folds of another recipe (here the 3 mm folds), with
                            their CRF: the baseline of the rule for adopting a recipe.
--cache FILE keeps every scored row (by setting, fold model file and its modification time)
and reuses it: folds that finished earlier need not be segmented again when the last one does.
After the tables, one line per setting: its per-fold Dice, its mean gain over the baseline and
its largest per-fold loss, and whether it passes the rule (mean gain ≥ 0.01, no fold losing
more than 0.01; for a recipe against --against-prefix's folds, no fold losing more than
0.02, docs/training.md session 9). Only training cases are read.
"""
import argparse
import json
import struct
import sys
import tempfile
from pathlib import Path

import liverseg
from evaluate_model import TABLE_HEADER, print_mean, print_row, score_case
from recipe_runs import epochs_done, fold_folder, fold_model, safetensors_header, training_cases


def with_metadata(source, target, edit):
    """Copies the model file `source` to `target` with `edit(document)` applied to its
    liverseg metadata document."""
    data = Path(source).read_bytes()
    header, size = safetensors_header(data)
    document = json.loads(header["__metadata__"]["liverseg"])
    edit(document)
    header["__metadata__"]["liverseg"] = json.dumps(document)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(target).write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size:])


def with_tau(source, tau, target):
    """Copies the model file `source` to `target` with fusion.tau set to (tau, tau)."""
    with_metadata(source, target, lambda document: document["fusion"].update(tau=[tau, tau]))


def numbers(text):
    return [float(t) for t in text.split(",")] if text else []


def rule_lines(results, names):
    """One line per setting: per-fold Dice, mean gain over its baseline, largest per-fold loss,
    and the written rule's verdict (mean gain >= 0.01 and no fold losing more than the
    setting's bound)."""
    for label, (baseline, rows, bound) in results.items():
        if baseline is None:
            continue
        base = results[baseline][1]
        gains = [rows[n]["dice"] - base[n]["dice"] for n in names]
        mean_gain, worst = sum(gains) / len(gains), min(gains)
        verdict = "passes" if mean_gain >= 0.01 and worst >= -bound else "fails"
        per_fold = " / ".join(f"{rows[n]['dice']:.4f}" for n in names)
        print(f"{label}: {per_fold}, mean {sum(rows[n]['dice'] for n in names) / len(names):.4f}; "
              f"against {baseline}: mean {mean_gain:+.4f}, worst fold {worst:+.4f}: {verdict} the rule")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=300, help="the epoch a finished fold reached")
    ap.add_argument("--thresholds", help="comma-separated probability thresholds to compare")
    ap.add_argument("--tau", help="comma-separated fusion weights τ1 = τ2 to compare")
    ap.add_argument("--crf-mu1", help="comma-separated CRF μ1 values of a grid")
    ap.add_argument("--crf-theta-beta", help="comma-separated CRF θβ values (HU) of a grid")
    ap.add_argument("--prefix", default="", help="score the folds in models/training/PREFIXloo-CASE (e.g. s4-)")
    ap.add_argument("--against-prefix", help="compare with the CRF against these folds ('' = the 3 mm recipe's)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cache", help="a JSON file of rows scored before, reused and extended")
    args = ap.parse_args()
    cache = json.loads(Path(args.cache).read_text()) if args.cache and Path(args.cache).exists() else {}

    def scored(label, source, model, name, ct, mask, **options):
        """score_case, or its row from the cache when this setting has scored this fold model."""
        key = f"{label}|{source}|{Path(source).stat().st_mtime_ns}"
        if key not in cache:
            cache[key] = score_case(model, name, ct, mask, threads=args.threads, **options)
            if args.cache:
                Path(args.cache).write_text(json.dumps(cache, indent=1))
        else:
            print_row(cache[key])
        return cache[key]

    finished = []
    for name, ct, mask in training_cases():
        done = epochs_done(fold_folder(name, args.prefix))
        if done >= args.epochs:
            finished.append((name, ct, mask))
        else:
            print(f"fold {name}: epoch {done} of {args.epochs}, not scored")
    if not finished:
        sys.exit("no finished fold")
    names = [name for name, _, _ in finished]
    scratch = tempfile.TemporaryDirectory()
    models = {name: liverseg.Model(fold_model(name, args.prefix)) for name in names}
    # (label, baseline label or None, {fold: model}, Model.segment options per fold)
    settings = [("without the CRF", None, models, lambda n: {"crf": False}),
                ("the model's CRF", "without the CRF", models, lambda n: {"crf": True})]
    for t in numbers(args.thresholds):
        settings.append((f"threshold {t}", "without the CRF", models, lambda n, t=t: {"crf": False, "threshold": t}))
    for tau in numbers(args.tau):
        changed = {}
        for name in names:
            target = Path(scratch.name) / f"{name}-tau{tau}.safetensors"
            with_tau(fold_model(name, args.prefix), tau, target)
            changed[name] = liverseg.Model(target)
        settings.append((f"tau {tau}", "without the CRF", changed, lambda n: {"crf": False}))
    for mu1 in numbers(args.crf_mu1):
        for beta in numbers(args.crf_theta_beta):
            def options(n, mu1=mu1, beta=beta):
                return {"crf": True, "crf_params": dict(models[n].metadata["crf"], mu1=mu1, theta_beta_hu=beta)}
            settings.append((f"CRF mu1 {mu1} theta_beta {beta}", "the model's CRF", models, options))
    results = {}
    for label, baseline, fold_models, options in settings:
        print(f"\nheld-out case, {label}\n{TABLE_HEADER}")
        rows = {name: scored(label, fold_model(name, args.prefix), fold_models[name], name, ct,
                             mask, **options(name))
                for name, ct, mask in finished}
        print_mean(list(rows.values()))
        results[label] = (baseline, rows, 0.01)
    if args.against_prefix is not None:
        others = {name: liverseg.Model(fold_model(name, args.against_prefix)) for name in names}
        label = f"the CRF, folds {args.against_prefix}loo-*" if args.against_prefix else "the CRF, the 3 mm recipe's folds"
        print(f"\nheld-out case, {label}\n{TABLE_HEADER}")
        rows = {name: scored(label, fold_model(name, args.against_prefix), others[name], name,
                             ct, mask, crf=True)
                for name, ct, mask in finished}
        print_mean(list(rows.values()))
        results[label] = (None, rows, None)
        results[f"the model's CRF, against {label}"] = (label, results["the model's CRF"][1], 0.02)
    print(f"\nfolds: {' / '.join(names)}")
    rule_lines(results, names)


if __name__ == "__main__":
    main()
