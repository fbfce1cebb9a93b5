#!/usr/bin/env python3
"""Where a fold's held-out mask is wrong: the false positives and the missed liver of
`segment`'s defaults (the members' mean probability, the model's CRF, post-processing; the
steps of tools/ensemble_loo.py), each split into a border part (within --border-mm of the
other mask's surface) and the connected pieces beyond it, with their volume, extent along the
head-to-foot axis, median HU, median liver probability (the members' mean, before the CRF:
how far the piece is from the 0.5 threshold) and the offset of their centre from the
reference liver's centre in the patient's directions (right, anterior, superior; mm).

    PYTHONPATH=bindings/python:tools LIVERSEG_LIBRARY=.build/release/libliverseg.so \\
        python3 tools/error_regions.py ircadb1-07 --members ,s4-

Only training cases are read (a fold model never saw its held-out case).
"""
import argparse

import numpy as np
from scipy import ndimage

import liverseg
from ensemble_loo import SIX_CONNECTED, head_to_foot_axis, mean_label, mean_of, prefixes, segment_probability
from evaluate_model import load_case
from recipe_runs import fold_model, training_cases


def far_pieces(error, other, spacing, border_mm):
    """(border voxels, labels of the far connected pieces: 1, 2, ..., 0 elsewhere) of `error`:
    a voxel is border when it lies within border_mm of `other` (the mask it should have
    matched). Labels, not one mask per piece: a scan's error can hold many small pieces."""
    distance = ndimage.distance_transform_edt(~other, sampling=spacing)
    border = error & (distance <= border_mm)
    labels, _ = ndimage.label(error & ~border, structure=SIX_CONNECTED)
    return border, labels


def describe(piece, ct, probability, affine, liver_centre, ml):
    """One line: volume, slices, median HU, median probability and the RAS offset of the
    piece's centre."""
    axis = head_to_foot_axis(affine)
    slices = np.flatnonzero(piece.any(axis=tuple(a for a in range(3) if a != axis)))
    offset = affine[:3, :3] @ (np.array(ndimage.center_of_mass(piece)) - liver_centre)
    return (f"{piece.sum() * ml:7.0f} ml, slices {slices[0]}-{slices[-1]} of {ct.shape[axis]}, "
            f"median {np.median(ct[piece]):5.0f} HU, p {np.median(probability[piece]):.2f}, centre {offset[0]:+5.0f} R {offset[1]:+5.0f} A "
            f"{offset[2]:+5.0f} S mm from the liver's")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", help="the held-out training case (its fold models are used)")
    ap.add_argument("--members", default=",s4-", help="fold prefixes whose mean is segmented (as ensemble_loo)")
    ap.add_argument("--border-mm", type=float, default=5.0)
    ap.add_argument("--smallest-ml", type=float, default=5.0, help="far pieces below this are counted, not listed")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    found = [c for c in training_cases() if c[0] == args.case]
    if not found:
        ap.error(f"{args.case} is not a training case")
    name, ct_path, mask_path = found[0]
    affine, ct, reference = load_case(str(ct_path), str(mask_path))
    members = prefixes(args.members)
    probabilities = []
    crf = None
    for prefix in members:
        model = liverseg.Model(fold_model(name, prefix))
        crf = crf or model.metadata["crf"]
        _, p = model.segment(ct, affine=affine, crf=False, return_probability=True, threads=args.threads)
        probabilities.append(p)
    probability = mean_of(probabilities)
    mask = segment_probability(ct, affine, probability, crf).astype(bool)
    truth = reference.astype(bool)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    ml = float(np.prod(spacing)) / 1000
    liver_centre = np.array(ndimage.center_of_mass(truth))
    print(f"{name}, {mean_label(members)}: segmented {mask.sum() * ml:.0f} ml, reference {truth.sum() * ml:.0f} ml")
    for title, error, other in (("false positive", mask & ~truth, truth), ("missed liver", truth & ~mask, mask)):
        border, labels = far_pieces(error, other, spacing, args.border_mm)
        sizes = np.bincount(labels.ravel())[1:]
        listed = [k + 1 for k in np.argsort(-sizes, kind="stable") if sizes[k] * ml >= args.smallest_ml]
        rest = sizes.sum() - sum(sizes[k - 1] for k in listed)
        print(f"{title}: {error.sum() * ml:.0f} ml; within {args.border_mm:g} mm of the "
              f"{'reference' if other is truth else 'segmented'} surface {border.sum() * ml:.0f} ml; "
              f"{len(listed)} pieces beyond it of at least {args.smallest_ml:g} ml, {rest * ml:.0f} ml in smaller ones")
        for k in listed:
            print("  " + describe(labels == k, ct, probability, affine, liver_centre, ml))


if __name__ == "__main__":
    main()
