#!/usr/bin/env python3
"""Leave-one-out measurement of an ensemble of grids (docs/training.md, session 11): for each
training case, the mean of the fused probabilities of its fold models — by default the 3 mm
fold (models/training/loo-CASE, V for IRCADb-17) and the 4 mm fold (s4-loo-CASE);
`--members ,s4-,s2-` adds the 2 mm folds, `--against ,s4-` makes the two-grid mean the
baseline — then `segment`'s CRF and post-processing, re-done here step by step so that any
probability can go through them:

  1. threshold at 0.5, keep the bounding box of the largest 6-connected component, grow it by
     max(uncertain margin, 2 θα) mm (ceil per axis, clipped to the volume);
  2. the CRF of the 3 mm model file's "crf" section (liverseg.refine_crf) on that crop, the
     mask cleared outside it;
  3. largest 6-connected component, 3D hole filling, hole filling of each slice across the
     head-to-foot axis (4-connected).

`--check` first runs the single 3 mm fold model through these steps and through
Model.segment and prints how many voxels differ (the steps must reproduce the library).

    PYTHONPATH=bindings/python:tools LIVERSEG_LIBRARY=.build/release/libliverseg.so \\
        python3 tools/ensemble_loo.py [--check]

--crf-mu1 5,10 --crf-theta-beta 10,15 adds the session-8 CRF grid on the ensemble's
probability (the rest as the model file's "crf" section), each cell against the model's CRF
(the best cell passes if its mean gains >= 0.01 and no fold loses more than 0.01).

--fine s2- adds the coarse-to-fine form of the candidate: the members' mean finds the liver (step 1's
grown box), and the fine fold model's probability joins the mean inside that box only, as a
library that runs the fine network on the box alone would give (docs/training.md, session 12).

--scales 0.9,1,1.1 adds scale test-time augmentation: each fold model also run with its
grid spacing times each scale (its file with only preprocessing.spacing_mm changed), the mean
over the members and every scale, against the members' mean (docs/training.md, session 11).

Only training cases are read.
"""
import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import liverseg
from evaluate_model import TABLE_HEADER, load_case, print_mean, print_row, score_mask
from loo_table import numbers, with_metadata
from recipe_runs import fold_model, training_cases, variant_label

SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def largest_component(mask):
    """The largest 6-connected component of a boolean mask (ties: the lowest label), or None."""
    labels, count = ndimage.label(mask, structure=SIX_CONNECTED)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def fill_holes_3d(mask):
    """Background regions (6-connected) not touching the volume's border become liver."""
    return ndimage.binary_fill_holes(mask, structure=SIX_CONNECTED)


def fill_holes_slices(mask, axis):
    """The same in each slice across `axis` (4-connected)."""
    out = np.moveaxis(mask.copy(), axis, 0)
    for k in range(out.shape[0]):
        out[k] = ndimage.binary_fill_holes(out[k], structure=FOUR_CONNECTED)
    return np.moveaxis(out, 0, axis)


def head_to_foot_axis(affine):
    """The voxel axis whose direction is closest to RAS's S."""
    return int(np.argmax(np.abs(affine[2, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))


def grown_box(mask, margin_mm, spacing):
    """The bounding box of `mask` grown by margin_mm (ceil per axis), clipped to the volume."""
    box = []
    for a in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))
        grow = math.ceil(margin_mm / spacing[a])
        box.append(slice(max(0, present[0] - grow), min(mask.shape[a], present[-1] + 1 + grow)))
    return tuple(box)


def postprocess(mask, affine):
    """`segment`'s post-processing: the largest component, then 3D and per-slice hole filling."""
    component = largest_component(mask)
    if component is None:
        return np.zeros(mask.shape, dtype=np.uint8)
    return fill_holes_slices(fill_holes_3d(component), head_to_foot_axis(affine)).astype(np.uint8)


def crf_region(probability, crf, affine):
    """Step 1: the grown bounding box of the thresholded probability's largest component, or
    None without one."""
    liver = largest_component(probability >= 0.5)
    if liver is None:
        return None
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return grown_box(liver, max(crf["uncertain_margin_mm"], 2 * crf["theta_alpha_mm"]), spacing)


def segment_probability(ct, affine, probability, crf):
    """`segment`'s CRF and post-processing steps on a probability on the CT's grid."""
    box = crf_region(probability, crf, affine)
    mask = np.zeros(ct.shape, dtype=bool)
    if box is not None:
        crop = np.ascontiguousarray(ct[box])
        mask[box] = liverseg.refine_crf(crop, np.ascontiguousarray(probability[box]), affine=affine, **crf) > 0
    return postprocess(mask, affine)


def mean_of(probabilities):
    """The members' mean as the library forms it: summed in file order, times 1/n."""
    total = probabilities[0].copy()
    for p in probabilities[1:]:
        total += p
    return total * (np.float32(1) / np.float32(len(probabilities)))


def with_fine_in_box(coarse_mean, full_mean, crf, affine):
    """The coarse-to-fine probability: the mean with the fine member inside the grown box of
    the coarse mean's largest component (step 1), the coarse mean outside it."""
    box = crf_region(coarse_mean, crf, affine)
    if box is None:
        return coarse_mean
    out = coarse_mean.copy()
    out[box] = full_mean[box]
    return out


def with_spacing_scale(source, scale, target):
    """Copies the model file `source` to `target` with preprocessing.spacing_mm times `scale`."""
    def edit(document):
        document["preprocessing"]["spacing_mm"] = [scale * s for s in document["preprocessing"]["spacing_mm"]]
    with_metadata(source, target, edit)


def prefixes(text):
    """Fold-folder prefixes from a comma-separated list ('' is the 3 mm recipe's folds)."""
    return text.split(",")


def mean_label(members):
    return "mean of " + " and ".join(variant_label(m) for m in members)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="first compare the steps with Model.segment (3 mm folds)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--members", default=",s4-",
                    help="fold prefixes of the ensemble's members ('' = models/training/loo-*, s4- = s4-loo-*, ...)")
    ap.add_argument("--against", default="", help="fold prefixes of the baseline (one grid, or a mean of several)")
    ap.add_argument("--bound", type=float, default=0.02, help="the largest per-fold loss the rule allows")
    ap.add_argument("--crf-mu1", help="comma-separated CRF μ1 values of a grid on the ensemble")
    ap.add_argument("--crf-theta-beta", help="comma-separated CRF θβ values (HU) of a grid on the ensemble")
    ap.add_argument("--cases", help="comma-separated training cases to measure (a look while folds train; "
                    "every rule is judged on all five)")
    ap.add_argument("--fine", help="fold prefix of a fine member averaged in only inside the members' liver box")
    ap.add_argument("--scales", help="comma-separated grid-spacing scales of a test-time augmentation (1 included)")
    args = ap.parse_args()
    members, against = prefixes(args.members), prefixes(args.against)
    if len(members) < 2:
        ap.error("--members needs two or more fold prefixes")
    grids = list(dict.fromkeys(members + against + ([args.fine] if args.fine else [])))
    candidate, baseline = mean_label(members), (mean_label(against) if len(against) > 1 else variant_label(against[0]))
    scales = numbers(args.scales)
    scratch = tempfile.TemporaryDirectory()
    tta_label = f"{candidate} at scales {args.scales}"
    crf_grid = [(mu1, beta) for mu1 in numbers(args.crf_mu1) for beta in numbers(args.crf_theta_beta)]
    cases = [c for c in training_cases() if not args.cases or c[0] in args.cases.split(",")]
    if args.check:
        print("3 mm fold models: voxels where these steps and Model.segment disagree")
        for name, ct_path, mask_path in cases:
            affine, ct, _ = load_case(str(ct_path), str(mask_path))
            model = liverseg.Model(fold_model(name))
            library, p = model.segment(ct, affine=affine, return_probability=True, threads=args.threads)
            ours = segment_probability(ct, affine, p, model.metadata["crf"])
            print(f"{name}: {int(np.count_nonzero(library != ours))} of {int(library.sum())} liver voxels", flush=True)
    rows = {label: [] for label in [variant_label(g) for g in grids] + [baseline, candidate]}
    rows.update({f"{candidate}, CRF mu1 {mu1} theta_beta {beta}": [] for mu1, beta in crf_grid})
    if scales:
        rows[tta_label] = []
    full_label = mean_label(members + [args.fine]) if args.fine else None
    fine_label = f"{candidate}, with {variant_label(args.fine)} in the liver box" if args.fine else None
    if args.fine:
        rows[full_label], rows[fine_label] = [], []

    def scored(label, name, probability, crf, reference, affine, start):
        print(f"{name}, {label}:", end=" ")
        rows[label].append(score_mask(name, segment_probability(ct, affine, probability, crf), reference, affine,
                                      time.perf_counter() - start))

    for name, ct_path, mask_path in cases:
        affine, ct, reference = load_case(str(ct_path), str(mask_path))
        models = {g: liverseg.Model(fold_model(name, g)) for g in grids}
        crf = models[members[0]].metadata["crf"]
        probability = {}
        for g, model in models.items():
            start = time.perf_counter()
            _, probability[g] = model.segment(ct, affine=affine, crf=False, return_probability=True,
                                              threads=args.threads)
            scored(variant_label(g), name, probability[g], crf, reference, affine, start)
        means = {}
        for label, group in ((baseline, against), (candidate, members)):
            if len(group) > 1 and label not in means:
                start = time.perf_counter()
                means[label] = mean_of([probability[g] for g in group])
                scored(label, name, means[label], crf, reference, affine, start)
        mean = means.get(candidate, probability[members[0]])
        if args.fine:
            start = time.perf_counter()
            full = mean_of([probability[g] for g in members + [args.fine]])
            scored(full_label, name, full, crf, reference, affine, start)
            start = time.perf_counter()
            scored(fine_label, name, with_fine_in_box(mean, full, crf, affine), crf, reference, affine, start)
        for mu1, beta in crf_grid:
            scored(f"{candidate}, CRF mu1 {mu1} theta_beta {beta}", name, mean,
                   dict(crf, mu1=mu1, theta_beta_hu=beta), reference, affine, time.perf_counter())
        if scales:
            start = time.perf_counter()
            total = None
            for g in members:
                for scale in scales:
                    if scale == 1:
                        p = probability[g]
                    else:
                        target = Path(scratch.name) / f"{name}-{g}{scale}.safetensors"
                        with_spacing_scale(fold_model(name, g), scale, target)
                        _, p = liverseg.Model(target).segment(ct, affine=affine, crf=False, return_probability=True,
                                                              threads=args.threads)
                    total = p.copy() if total is None else total + p
            scored(tta_label, name, total / (len(members) * len(scales)), crf, reference, affine, start)
    for label, table in rows.items():
        print(f"\nheld-out case, {label}, with the CRF\n{TABLE_HEADER}")
        for row in table:
            print_row(row)
        print_mean(table)
    print()
    verdict(candidate, rows, baseline, args.bound)
    for mu1, beta in crf_grid:
        verdict(f"{candidate}, CRF mu1 {mu1} theta_beta {beta}", rows, candidate, 0.01)
    if scales:
        verdict(tta_label, rows, candidate, 0.01)
    if args.fine:
        verdict(full_label, rows, candidate, args.bound)
        agreement(fine_label, rows, full_label)


def agreement(label, rows, reference):
    """Prints how far a faster form of a setting lands from the setting itself, per fold."""
    differences = [r["dice"] - b["dice"] for r, b in zip(rows[label], rows[reference])]
    print(f"{label}, {len(differences)} folds: against {reference}: mean {np.mean(differences):+.4f}, per fold "
          f"{' / '.join(f'{d:+.4f}' for d in differences)}")


def verdict(label, rows, baseline, bound):
    """Prints a setting's per-fold Dice and the rule's verdict against `baseline` (mean gain
    >= 0.01, no fold losing more than `bound`)."""
    candidate = [r["dice"] for r in rows[label]]
    gains = [r["dice"] - b["dice"] for r, b in zip(rows[label], rows[baseline])]
    mean_gain, worst = sum(gains) / len(gains), min(gains)
    rule = f"the rule (mean gain >= 0.01, no fold losing more than {bound})"
    if len(candidate) < 5:
        outcome = f"no verdict: {rule} is judged on all five folds"
    else:
        outcome = ("passes " if mean_gain >= 0.01 and worst >= -bound else "fails ") + rule
    print(f"{label}, {len(candidate)} folds: {' / '.join(f'{d:.4f}' for d in candidate)}, mean {np.mean(candidate):.4f}; "
          f"against {baseline}: mean {mean_gain:+.4f}, worst fold {worst:+.4f}: {outcome}")


if __name__ == "__main__":
    main()
