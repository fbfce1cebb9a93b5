#!/usr/bin/env python3
"""Grid search of the CRF parameters on labelled volumes, as in the paper's §2.3.

For every combination of τ (eq. 4), μ1, μ2, θα, θβ, θγ it refines each volume's
probability with liverseg_refine_crf and scores the mask against the manual one; it prints
progress, a table sorted by mean VOE, and the best setting by VOE and by Dice.

Probabilities come from (per case folder with ct.nii.gz and liver.nii.gz):
  --probabilities DIR   DIR/<case>.npz with `main`, `branch1`, `branch2` arrays [x, y, z]
                        (network outputs on the CT grid); τ is searched over --tau1/--tau2.
                        Or `probability` alone (τ not searched).
  --degrade             no network: the manual mask blurred, shifted and noised where
                        uncertain (a stand-in with a network-like error; tunes nothing real).

The library parallelises each refinement over slices (all cores by default).

    PYTHONPATH=bindings/python LIVERSEG_LIBRARY=.build/release/libliverseg.so \\
        python3 tools/crf_search.py --data ../shared/data ircadb1-01 ircadb1-07 --degrade --every 4
"""
import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np


def floats(text):
    return [float(v) for v in text.split(",")]


def degraded_probability(mask, spacing, seed=0, sigma_mm=3.0, shift=(2, -2, 1), noise=0.3):
    """The manual mask blurred by σ mm, shifted by voxels, with uniform noise scaled by
    4p(1−p) so confident regions stay confident, as a network's output does."""
    from scipy import ndimage
    rng = np.random.default_rng(seed)
    p = ndimage.gaussian_filter(mask.astype(np.float32), [sigma_mm / s for s in spacing])
    p = np.roll(p, shift, axis=(0, 1, 2))
    p = p + 4 * p * (1 - p) * rng.uniform(-noise, noise, p.shape).astype(np.float32)
    return np.clip(p, 0, 1).astype(np.float32)


def scores(mask, truth):
    """(VOE %, Dice) of a mask against the reference."""
    a, b = mask.astype(bool), truth.astype(bool)
    inter, union = np.count_nonzero(a & b), np.count_nonzero(a | b)
    return 100.0 * (1 - inter / max(union, 1)), 2.0 * inter / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def load_case(data, name, args):
    import nibabel as nib
    ct_img = nib.load(str(Path(data) / name / "ct.nii.gz"))
    ct = np.asarray(ct_img.dataobj).astype(np.int16)
    truth = (np.asarray(nib.load(str(Path(data) / name / "liver.nii.gz")).dataobj) > 0.5).astype(np.uint8)
    spacing = tuple(float(s) for s in ct_img.header.get_zooms()[:3])
    if args.degrade:
        sources = {"probability": degraded_probability(truth, spacing, seed=args.seed)}
    else:
        npz = np.load(Path(args.probabilities) / f"{name}.npz")
        sources = {k: npz[k].astype(np.float32) for k in npz.files}
    if args.every > 1:
        # slice2d treats slices independently, so a subset of slices is a valid sample.
        ct, truth = ct[:, :, ::args.every], truth[:, :, ::args.every]
        sources = {k: v[:, :, ::args.every] for k, v in sources.items()}
    return dict(name=name, ct=np.asfortranarray(ct), truth=truth, spacing=spacing, affine=ct_img.affine, sources=sources)


def fused(case, tau):
    s = case["sources"]
    if "probability" in s:
        return s["probability"]
    return (1 - tau[0] - tau[1]) * s["main"] + tau[0] * s["branch1"] + tau[1] * s["branch2"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", help="case folders under --data (ct.nii.gz + liver.nii.gz)")
    ap.add_argument("--data", default="../shared/data")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--probabilities", help="folder of <case>.npz network outputs")
    src.add_argument("--degrade", action="store_true", help="use a degraded manual mask")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=1, help="use every k-th slice (slice2d only)")
    ap.add_argument("--tau1", type=floats, default=[0.0], help="branch-1 weights, comma-separated")
    ap.add_argument("--tau2", type=floats, default=[0.0], help="branch-2 weights")
    ap.add_argument("--mu1", type=floats, default=[3, 5, 10])
    ap.add_argument("--mu2", type=floats, default=[1, 3])
    ap.add_argument("--theta-alpha", type=floats, default=[3, 6, 12], help="mm")
    ap.add_argument("--theta-beta", type=floats, default=[8, 15, 30], help="HU")
    ap.add_argument("--theta-gamma", type=floats, default=[1, 2], help="mm")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--mode", default="slice2d", choices=["slice2d", "volume3d"])
    ap.add_argument("--normalisation", default="symmetric", choices=["symmetric", "after"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    if args.mode == "volume3d" and args.every > 1:
        ap.error("--every needs --mode slice2d")

    import liverseg
    cases = [load_case(args.data, name, args) for name in args.cases]
    taus = [t for t in itertools.product(args.tau1, args.tau2) if t[0] + t[1] <= 1]
    grid = list(itertools.product(taus, args.mu1, args.mu2, args.theta_alpha, args.theta_beta, args.theta_gamma))
    print(f"{len(grid)} settings × {len(cases)} volumes", file=sys.stderr)
    baseline = {c["name"]: scores(fused(c, taus[0]) >= 0.5, c["truth"]) for c in cases}
    for name, (v, d) in baseline.items():
        print(f"{name}: thresholded probability (τ={taus[0]}) VOE {v:.2f} % Dice {d:.4f}", file=sys.stderr)
    results, start = [], time.time()
    for n, (tau, mu1, mu2, ta, tb, tg) in enumerate(grid, 1):
        per_case = []
        for c in cases:
            mask = liverseg.refine_crf(c["ct"], fused(c, tau), affine=c["affine"], threads=args.threads,
                                       mode=args.mode, normalisation=args.normalisation, n_iterations=args.iterations,
                                       mu1=mu1, mu2=mu2, theta_alpha_mm=ta, theta_beta_hu=tb, theta_gamma_mm=tg)
            per_case.append(scores(mask, c["truth"]))
        voe, dice = np.mean([s[0] for s in per_case]), np.mean([s[1] for s in per_case])
        results.append((voe, dice, tau, mu1, mu2, ta, tb, tg))
        elapsed = time.time() - start
        print(f"\r[{n}/{len(grid)}] {elapsed:.0f} s, ~{elapsed / n * (len(grid) - n):.0f} s left; "
              f"best VOE so far {min(r[0] for r in results):.2f} %", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    results.sort(key=lambda r: r[0])
    print(f"{'VOE %':>7} {'Dice':>7}  tau1  tau2   mu1   mu2  θα mm  θβ HU  θγ mm")
    for voe, dice, tau, mu1, mu2, ta, tb, tg in results[:args.top]:
        print(f"{voe:7.3f} {dice:7.4f}  {tau[0]:4.2f}  {tau[1]:4.2f} {mu1:5g} {mu2:5g} {ta:6g} {tb:6g} {tg:6g}")
    best_dice = max(results, key=lambda r: r[1])
    print("best by VOE:  tau=%s mu1=%g mu2=%g theta_alpha_mm=%g theta_beta_hu=%g theta_gamma_mm=%g (VOE %.3f %%, Dice %.4f)"
          % (results[0][2], *results[0][3:], results[0][0], results[0][1]))
    print("best by Dice: tau=%s mu1=%g mu2=%g theta_alpha_mm=%g theta_beta_hu=%g theta_gamma_mm=%g (VOE %.3f %%, Dice %.4f)"
          % (best_dice[2], *best_dice[3:], best_dice[0], best_dice[1]))


if __name__ == "__main__":
    main()
