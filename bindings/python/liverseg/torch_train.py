"""Train the 3D DSN with PyTorch and export a liverseg model file.

    python -m liverseg.torch_train --data ../shared/data --cases ircadb1-01 ircadb1-07 ircadb1-17 \
        --out models/liver-default.safetensors --minutes 40

The network is the same layer list liverseg runs (model_file.parameter_shapes); the
objective is the paper's eq. 3 (main cross-entropy + decaying η_d × branch
cross-entropies + weight decay). Volumes are prepared with liverseg's own conventions:
reoriented to the model orientation, trilinearly resampled to the model spacing, HU
clipped and normalised. Random patches are centred on the liver half of the time, rotated
by multiples of 90° in-plane and flipped. Runs on CPU; deterministic for a seed on one thread.
"""
import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform
from scipy.ndimage import zoom

from .model_file import CONV_NAMES, parameter_shapes, save_model


class DSN(torch.nn.Module):
    """The 3D DSN (paper Fig. 1) with liverseg's tensor names."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.params = torch.nn.ParameterDict()
        for name, shape in parameter_shapes(arch):
            p = torch.empty(shape)
            if name.endswith(".bias"):
                torch.nn.init.zeros_(p)
            else:
                fan_in = shape[1] * int(np.prod(shape[2:])) if "deconv" not in name else shape[0] * 27
                torch.nn.init.normal_(p, 0.0, (2.0 / fan_in) ** 0.5)
            self.params[name.replace(".", "__")] = torch.nn.Parameter(p)

    def weight(self, name):
        return self.params[name.replace(".", "__")]

    def forward(self, x):
        def conv(n, t):
            w = self.weight(n + ".weight")
            return F.relu(F.conv3d(t, w, self.weight(n + ".bias"), padding=[s // 2 for s in w.shape[2:]]))
        def up(n, t):
            return F.conv_transpose3d(t, self.weight(n + ".weight"), self.weight(n + ".bias"),
                                      stride=2, padding=1, output_padding=1)
        p1 = F.max_pool3d(conv("conv2", conv("conv1", x)), 2)
        b1 = up("branch1.deconv", p1)
        p2 = F.max_pool3d(conv("conv5", conv("conv4", p1)), 2)
        b2 = up("branch2.deconv2", F.relu(up("branch2.deconv1", p2)))
        main = up("deconv10", F.relu(up("deconv9", conv("conv8", conv("conv7", p2)))))
        return main, b1, b2

    def export(self):
        return {name: self.weight(name).detach().numpy().astype(np.float32) for name, _ in parameter_shapes(self.arch)}


def prepare(ct_path, mask_path, pre):
    """(normalised CT, 0/1 mask) on the model grid, arrays [z, y, x] for torch."""
    img = nib.load(ct_path)
    to_model = ornt_transform(io_orientation(img.affine), axcodes2ornt(tuple(pre["orientation"])))
    ct = apply_orientation(np.asarray(img.dataobj, dtype=np.float32), to_model)
    mask = apply_orientation((np.asarray(nib.load(mask_path).dataobj) > 0).astype(np.float32), to_model)
    spacing = np.linalg.norm(img.affine[:3, :3], axis=0)[to_model[:, 0].astype(int).argsort()]
    grid = [max(1, int(round(n * s / m))) for n, s, m in zip(ct.shape, spacing, pre["spacing_mm"])]
    factors = [g / n for g, n in zip(grid, ct.shape)]
    ct = zoom(ct, factors, order=1, grid_mode=True, mode="nearest")
    mask = zoom(mask, factors, order=1, grid_mode=True, mode="nearest") >= 0.5
    lo, hi = pre["hu_window"]
    ct = (np.clip(ct, lo, hi) - pre["mean"]) / pre["std"]
    return ct.transpose(2, 1, 0).astype(np.float32), mask.transpose(2, 1, 0).astype(np.int64)


def random_patch(rng, ct, mask, size, background_value):
    """A patch [z, y, x] of `size` holding a liver voxel half of the time, padded with air."""
    if rng.random() < 0.5 and mask.any():
        idx = np.argwhere(mask)
        anchor = idx[rng.integers(len(idx))]
    else:
        anchor = [rng.integers(n) for n in ct.shape]
    # The anchor lands anywhere in the patch: a centred organ would teach the network where
    # the patch borders (zero padding) are, a cue absent on whole volumes.
    start = [int(a) - int(rng.integers(s)) for a, s in zip(anchor, size)]
    patch_ct = np.full(size, background_value, np.float32)
    patch_mask = np.zeros(size, np.int64)
    src = tuple(slice(max(0, s), min(n, s + d)) for s, d, n in zip(start, size, ct.shape))
    dst = tuple(slice(max(0, -s), max(0, -s) + (sl.stop - sl.start)) for s, sl in zip(start, src))
    patch_ct[dst] = ct[src]
    patch_mask[dst] = mask[src]
    k = int(rng.integers(4))                     # in-plane rotation by k·90° (axes y, x)
    patch_ct, patch_mask = np.rot90(patch_ct, k, (1, 2)), np.rot90(patch_mask, k, (1, 2))
    if rng.random() < 0.5:
        patch_ct, patch_mask = patch_ct[:, :, ::-1], patch_mask[:, :, ::-1]
    return np.ascontiguousarray(patch_ct), np.ascontiguousarray(patch_mask)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--cases", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--arch", default=None, help="JSON file with an architecture (default: the paper's)")
    parser.add_argument("--spacing", type=float, nargs=3, default=[2.5, 2.5, 2.5])
    parser.add_argument("--patch", type=int, nargs=3, default=[64, 64, 48], help="x y z, multiples of 4")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", default=None, help="CSV of iteration, seconds, loss terms")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    from .model_file import DEFAULT_PREPROCESSING, paper_architecture
    arch = json.loads(Path(args.arch).read_text()) if args.arch else paper_architecture()
    pre = dict(DEFAULT_PREPROCESSING, spacing_mm=list(args.spacing))
    data = [prepare(Path(args.data) / c / "ct.nii.gz", Path(args.data) / c / "liver.nii.gz", pre) for c in args.cases]
    background = (pre["hu_window"][0] - pre["mean"]) / pre["std"]
    net = DSN(arch)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    size = tuple(reversed(args.patch))
    eta = [0.3, 0.4]
    log = open(args.log, "w") if args.log else None
    if log:
        log.write("iteration,seconds,loss,main,branch1,branch2\n")
    start = time.time()
    iteration = 0
    while time.time() - start < args.minutes * 60:
        ct, mask = data[iteration % len(data)]
        x, y = random_patch(rng, ct, mask, size, background)
        main, b1, b2 = net(torch.from_numpy(x)[None, None])
        target = torch.from_numpy(y)[None]
        losses = [F.cross_entropy(o, target) for o in (main, b1, b2)]
        decay = 0.95 ** (iteration // 100)      # η decays 5 % every 100 iterations
        loss = losses[0] + decay * (eta[0] * losses[1] + eta[1] * losses[2])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        iteration += 1
        if log:
            log.write(f"{iteration},{time.time() - start:.1f},{loss.item():.5f}," + ",".join(f"{l.item():.5f}" for l in losses) + "\n")
            log.flush()
        if iteration % 50 == 0:
            print(f"iteration {iteration} {time.time() - start:.0f} s loss {loss.item():.4f} main {losses[0].item():.4f}", flush=True)
            save_model(args.out, arch, net.export(), preprocessing=pre, fusion_tau=(0.1, 0.1),
                       provenance=provenance(args, iteration, time.time() - start))
    save_model(args.out, arch, net.export(), preprocessing=pre, fusion_tau=(0.1, 0.1),
               provenance=provenance(args, iteration, time.time() - start))
    print(f"wrote {args.out} after {iteration} iterations")


def provenance(args, iterations, seconds):
    return {"trainer": "liverseg.torch_train (PyTorch CPU)", "cases": args.cases, "iterations": iterations,
            "seconds": round(seconds), "patch_xyz": args.patch, "optimizer": f"Adam lr {args.lr}",
            "weight_decay": args.weight_decay, "seed": args.seed,
            "objective": "eq. 3: CE(main) + 0.95^(it/100)·(0.3·CE(branch1) + 0.4·CE(branch2))"}


if __name__ == "__main__":
    main()
