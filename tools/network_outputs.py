#!/usr/bin/env python3
"""Writes a model's three liver probabilities (main, branch1, branch2) on each case's CT
grid to DIR/<case>.npz, the input tools/crf_search.py needs to search τ as well.

Each output is the fused probability of a copy of the model whose fusion τ selects it
alone ((0, 0) → main, (1, 0) → branch 1, (0, 1) → branch 2), so it goes through exactly
the resampling liverseg_segment uses.

    PYTHONPATH=bindings/python LIVERSEG_LIBRARY=.build/release/libliverseg.so \\
        python3 tools/network_outputs.py --model models/liver-default.safetensors \\
        --data ../shared/data ircadb1-01 ircadb1-07 ircadb1-17 --out /tmp/outputs
"""
import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

import liverseg
from liverseg.model_file import safetensors_bytes


def with_tau(path, tau):
    """The model file's bytes with fusion.tau replaced."""
    with safe_open(str(path), "np") as f:
        doc = json.loads(f.metadata()["liverseg"])
    doc["fusion"]["tau"] = list(tau)
    return safetensors_bytes(load_file(str(path)), {"liverseg": json.dumps(doc)})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {name: liverseg.Model(data=with_tau(args.model, tau))
              for name, tau in [("main", (0, 0)), ("branch1", (1, 0)), ("branch2", (0, 1))]}
    for case in args.cases:
        img = nib.load(str(Path(args.data) / case / "ct.nii.gz"))
        ct = np.asarray(img.dataobj)
        arrays = {name: m.segment(ct, affine=img.affine, return_probability=True, threads=args.threads)[1]
                  for name, m in models.items()}
        np.savez_compressed(out / f"{case}.npz", **arrays)
        print(f"{case}: wrote {out / (case + '.npz')}")


if __name__ == "__main__":
    main()
