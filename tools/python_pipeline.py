#!/usr/bin/env python3
"""The benchmark's peer for `liverseg segment`: the same pipeline written with the Python
tools a researcher would reach for — nibabel to read, scipy to resample and post-process,
PyTorch (CPU) for the network, pydensecrf2 for the dense CRF — from the model file's
weights and metadata (docs/model-format.md), independently of the library.

    python3 tools/python_pipeline.py MODEL CT.nii.gz MASK.nii.gz [--no-crf] [--threads N]

Steps, per network of the model (an ensemble's networks are averaged): reorient to the
model's axis codes (nibabel), trilinear resampling to the model spacing
(scipy.ndimage.zoom, grid_mode, mode "nearest": the library's rule), clip and normalise,
pad to multiples of 4 with the window's lower bound, the 3D DSN in one piece (PyTorch),
eq. 4 fusion, resampling back. Then threshold at 0.5, or the dense CRF with the model file's
parameters — in the box around the largest component grown by max(10 mm, 2θα), and inside it
the box of uncertain voxels (p in (0.01, 0.99)) grown by the uncertain margin, as `segment`
does — and the post-processing (largest 6-connected component, 3D and per-slice hole
filling). Writes the mask as uint8 NIfTI with the CT's affine. Wall time and peak memory
are the benchmark's business (tools/bench.py runs this as a child process).
"""
import argparse
import json
import math
import time

import nibabel as nib
import numpy as np
import torch
from nibabel import orientations
from safetensors.numpy import load_file
from scipy import ndimage

import liverseg
from liverseg.torch_train import DSN
from ensemble_loo import crf_region, grown_box, postprocess


def read_model(path):
    """[(architecture, preprocessing, tau, {tensor name: array})] for each network of the file."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        document = json.loads(json.loads(f.read(size))["__metadata__"]["liverseg"])
    tensors = load_file(path)
    if document["format_version"] == 1:
        sections, prefixes = [document], [""]
    else:
        sections = document["networks"]
        prefixes = [f"networks.{k}." for k in range(len(sections))]
    networks = []
    for section, prefix in zip(sections, prefixes):
        weights = {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}
        networks.append((section["architecture"], section["preprocessing"], section["fusion"]["tau"], weights))
    return networks, document.get("crf", {})


def resample(volume, shape):
    """Trilinear resampling onto `shape` with voxel centres aligned (the library's rule)."""
    zoom = [n / m for n, m in zip(shape, volume.shape)]
    return ndimage.zoom(volume, zoom, order=1, mode="nearest", grid_mode=True, output=np.float32)


def network_probability(ct, affine, architecture, preprocessing, tau, weights):
    """The fused liver probability of one network on the CT's grid."""
    ornt = orientations.ornt_transform(orientations.io_orientation(affine),
                                       orientations.axcodes2ornt(tuple(preprocessing["orientation"])))
    oriented = orientations.apply_orientation(ct, ornt)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)[ornt[:, 0].astype(int)]
    shape = [max(1, math.floor(n * s / m + 0.5))
             for n, s, m in zip(oriented.shape, spacing, preprocessing["spacing_mm"])]
    lower, upper = preprocessing["hu_window"]
    x = (np.clip(resample(oriented, shape), lower, upper) - preprocessing["mean"]) / preprocessing["std"]
    padded = [-(-n // 4) * 4 for n in shape]
    pad_value = (lower - preprocessing["mean"]) / preprocessing["std"]
    x = np.pad(x, [(0, p - n) for n, p in zip(shape, padded)], constant_values=pad_value).astype(np.float32)
    net = DSN(architecture)
    with torch.no_grad():
        for name, value in weights.items():
            net.weight(name).copy_(torch.from_numpy(value))
        outputs = net(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))[None, None])
        liver = [torch.softmax(o, 1)[0, 1].numpy().transpose(2, 1, 0) for o in outputs]
    fused = (1 - tau[0] - tau[1]) * liver[0] + tau[0] * liver[1] + tau[1] * liver[2]
    fused = fused[:shape[0], :shape[1], :shape[2]]
    back = resample(np.ascontiguousarray(fused, dtype=np.float32), oriented.shape)
    return orientations.apply_orientation(back, orientations.ornt_transform(
        orientations.axcodes2ornt(tuple(preprocessing["orientation"])), orientations.io_orientation(affine)))


def dense_crf(ct, probability, spacing, crf):
    """pydensecrf2's fully connected CRF (5 mean-field steps, Potts, symmetric normalisation)."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian, unary_from_softmax
    p = np.clip(probability, 1e-6, 1 - 1e-6).astype(np.float32)
    d = dcrf.DenseCRF(p.size, 2)
    d.setUnaryEnergy(unary_from_softmax(np.stack([1 - p, p])))
    d.addPairwiseEnergy(create_pairwise_gaussian([crf["theta_gamma_mm"] / s for s in spacing], p.shape),
                        compat=crf["mu2"], kernel=dcrf.DIAG_KERNEL, normalization=dcrf.NORMALIZE_SYMMETRIC)
    d.addPairwiseEnergy(create_pairwise_bilateral([crf["theta_alpha_mm"] / s for s in spacing],
                                                  [crf["theta_beta_hu"]], ct, chdim=-1),
                        compat=crf["mu1"], kernel=dcrf.DIAG_KERNEL, normalization=dcrf.NORMALIZE_SYMMETRIC)
    q = np.array(d.inference(crf["n_iterations"])).reshape((2,) + p.shape)
    return q[1] > q[0]


def segment(ct, affine, networks, crf):
    """The mask of the pipeline above (crf None: no CRF)."""
    probability = sum(network_probability(ct, affine, *network) for network in networks) / len(networks)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    mask = probability >= 0.5
    region = crf_region(probability, crf, affine) if crf is not None else None
    if region is not None:
        refined = np.zeros_like(mask)
        refined[region] = mask[region]
        uncertain = (probability[region] > crf["uncertain_probability"]) & (
            probability[region] < 1 - crf["uncertain_probability"])
        if uncertain.any():
            local = grown_box(uncertain, crf["uncertain_margin_mm"], spacing)
            inner = tuple(slice(r.start + l.start, r.start + l.stop) for r, l in zip(region, local))
            refined[inner] = dense_crf(ct[inner], probability[inner], spacing, crf)
        mask = refined
    return postprocess(mask, affine)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("ct")
    ap.add_argument("mask")
    ap.add_argument("--no-crf", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    image = nib.load(args.ct)
    ct = np.asarray(image.dataobj, dtype=np.float32)
    networks, crf_section = read_model(args.model)
    # The library's defaults for keys the model file's section lacks (include/liverseg.h).
    crf = None if args.no_crf else dict(liverseg.crf_default_params(), **crf_section)
    mask = segment(ct, image.affine, networks, crf)
    nib.save(nib.Nifti1Image(mask, image.affine), args.mask)
    print(f"{time.perf_counter() - start:.2f} s, {int(mask.sum())} liver voxels")


if __name__ == "__main__":
    main()
