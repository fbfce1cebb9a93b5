"""The main job: segment a real CT from ../shared/data, write the mask and a picture.

Uses the bundled model models/liver-default.safetensors when it exists. Until a trained
model is bundled, it makes a randomly initialised model of the paper's architecture:
the run then exercises the whole pipeline, but its output is NOT a liver.
"""
import argparse
import struct
import sys
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

import liverseg

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "models" / "liver-default.safetensors"


def write_png(path, rgb):
    """Minimal PNG (8-bit RGB, no filtering) via zlib."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def outline(mask2d):
    m = mask2d.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]; inner[:-1, :] &= m[1:, :]; inner[:, 1:] &= m[:, :-1]; inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def preview(ct, mask, reference, spacing, path):
    """Axial, coronal and sagittal slices through the mask's centre (reference in green,
    result in red), scaled to square pixels, side by side."""
    centre = [int(c.mean()) if c.size else s // 2 for c, s in zip(np.nonzero(mask if mask.any() else reference), ct.shape)]
    def view(axis):
        sl = [slice(None)] * 3
        sl[axis] = centre[axis]
        img, m, r = ct[tuple(sl)], mask[tuple(sl)], reference[tuple(sl)]
        keep = [a for a in range(3) if a != axis]
        # nearest-neighbour stretch to isotropic pixels
        sx, sy = spacing[keep[0]], spacing[keep[1]]
        step = min(sx, sy)
        ix = np.minimum((np.arange(int(img.shape[0] * sx / step)) * step / sx).astype(int), img.shape[0] - 1)
        iy = np.minimum((np.arange(int(img.shape[1] * sy / step)) * step / sy).astype(int), img.shape[1] - 1)
        img, m, r = img[ix][:, iy], m[ix][:, iy], r[ix][:, iy]
        grey = (np.clip((img + 160.0) / 400.0, 0, 1) * 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        rgb[outline(r)] = (0, 220, 0)
        rgb[outline(m)] = (255, 40, 40)
        return np.flipud(np.transpose(rgb, (1, 0, 2)))  # rows = second axis, top = high
    views = [view(2), view(1), view(0)]
    height = max(v.shape[0] for v in views)
    padded = [np.pad(v, ((0, height - v.shape[0]), (0, 4), (0, 0))) for v in views]
    write_png(path, np.concatenate(padded, axis=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--case", default="ircadb1-01")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if BUNDLED.exists():
        model_path = BUNDLED
    else:
        model_path = out / "untrained-demo.safetensors"
        arch = liverseg.paper_architecture()
        liverseg.save_model(model_path, arch, liverseg.random_weights(arch, seed=0),
                            provenance={"warning": "random weights: not a trained liver model"})
        print("WARNING: no trained model is bundled yet (models/liver-default.safetensors);\n"
              "         this run uses RANDOM weights: the pipeline runs end to end, but the mask is NOT a liver.",
              file=sys.stderr)
    case = Path(args.data) / args.case
    ct_img = nib.load(case / "ct.nii.gz")
    ct = np.asarray(ct_img.dataobj)
    reference = np.asarray(nib.load(case / "liver.nii.gz").dataobj) > 0
    model = liverseg.Model(model_path)
    start = time.perf_counter()
    mask = model.segment(ct, affine=ct_img.affine,
                         progress=lambda f, s: print(f"\r{['preprocess', 'network', 'postprocess'][s]:12s} {100 * f:5.1f}%",
                                                     end="", file=sys.stderr) and False)
    seconds = time.perf_counter() - start
    print(file=sys.stderr)
    header = ct_img.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1, 0)
    nib.save(nib.Nifti1Image(mask, ct_img.affine, header), out / "liver.nii.gz")
    spacing = np.linalg.norm(ct_img.affine[:3, :3], axis=0)
    preview(ct.astype(np.float32), mask, reference, spacing, out / "preview.png")
    dice = 2 * np.logical_and(mask, reference).sum() / (mask.sum() + reference.sum())
    print(f"{case.name}: {ct.shape} voxels, segmented in {seconds:.2f} s with {model_path.name}; "
          f"Dice vs manual mask {dice:.3f}")
    print(f"wrote {out / 'liver.nii.gz'} and {out / 'preview.png'}")


if __name__ == "__main__":
    main()
