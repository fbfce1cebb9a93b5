"""Writes the seed corpora of the fuzz targets (Sources/LiversegFuzz) from synthetic data
only — never patient data:

    python tools/fuzz_seeds.py OUT      # OUT/nifti, OUT/nrrd, OUT/metaimage, OUT/model, OUT/crf, OUT/evaluate

Image seeds are small volumes in every voxel type, raw and compressed, plus decompression
bombs (a stream inflating far beyond what its header describes, and a header describing
more than its stream holds). Detached NRRD/MetaImage seeds use the harness's layout: byte 0
odd, a 16-bit little-endian header length, the header, then the data file's bytes.
"""
import gzip
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bindings" / "python"))


def nifti(shape, dtype, gz, payload=None, vox_offset=352):
    import nibabel as nib
    data = (np.arange(np.prod(shape)) % 200 - 100).astype(dtype).reshape(shape)
    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0]))
    raw = img.to_bytes()
    if payload is not None:
        raw = raw[:vox_offset] + payload
    return gzip.compress(raw, 9) if gz else raw


def detached(header: bytes, data: bytes) -> bytes:
    return bytes([1]) + struct.pack("<H", len(header)) + header + data


def nrrd_header(shape, type_name, encoding, data_file=None):
    lines = ["NRRD0004", f"type: {type_name}", "dimension: 3", "sizes: " + " ".join(map(str, shape)),
             "space: left-posterior-superior", "space directions: (0.8,0,0) (0,0.8,0) (0,0,2)",
             "space origin: (0,0,0)", "endian: little", f"encoding: {encoding}"]
    if data_file:
        lines.append(f"data file: {data_file}")
    return ("\n".join(lines) + "\n\n").encode()


def mha_header(shape, type_name, compressed, data_file="LOCAL"):
    lines = ["ObjectType = Image", "NDims = 3", "BinaryData = True", "BinaryDataByteOrderMSB = False",
             f"CompressedData = {'True' if compressed else 'False'}", "TransformMatrix = 1 0 0 0 1 0 0 0 1",
             "Offset = 0 0 0", "ElementSpacing = 0.8 0.8 2", "DimSize = " + " ".join(map(str, shape)),
             f"ElementType = {type_name}", f"ElementDataFile = {data_file}"]
    return ("\n".join(lines) + "\n").encode()


def main(out):
    out = Path(out)
    seeds = {k: [] for k in ("nifti", "nrrd", "metaimage", "model", "crf", "evaluate")}
    shape = (6, 5, 4)
    n = int(np.prod(shape))
    for dtype in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64):
        for gz in (False, True):
            seeds["nifti"].append(nifti(shape, dtype, gz))
    # Bombs: 8 MiB of zeros behind a header describing 240 bytes; a header describing
    # 64 MiB behind a short stream.
    seeds["nifti"].append(nifti(shape, np.int16, True, payload=bytes(8 << 20)))
    seeds["nifti"].append(nifti((512, 512, 128), np.int16, True, payload=bytes(1024)))
    data = (np.arange(n) % 200).astype("<i2").tobytes()
    seeds["nrrd"].append(nrrd_header(shape, "short", "raw") + data)
    seeds["nrrd"].append(nrrd_header(shape, "short", "gzip") + gzip.compress(data))
    seeds["nrrd"].append(nrrd_header(shape, "short", "gzip") + gzip.compress(bytes(8 << 20), 9))
    seeds["nrrd"].append(detached(nrrd_header(shape, "short", "gzip", "d.raw.gz"), gzip.compress(data)))
    seeds["nrrd"].append(detached(nrrd_header(shape, "float", "raw", "d.raw"), np.ones(n, "<f4").tobytes()))
    seeds["metaimage"].append(mha_header(shape, "MET_SHORT", False) + data)
    seeds["metaimage"].append(mha_header(shape, "MET_SHORT", True) + zlib.compress(data))
    seeds["metaimage"].append(mha_header(shape, "MET_SHORT", True) + zlib.compress(bytes(8 << 20), 9))
    seeds["metaimage"].append(detached(mha_header(shape, "MET_UCHAR", False, "d.raw"), bytes(n)))
    seeds["metaimage"].append(detached(mha_header(shape, "MET_DOUBLE", True, "d.zraw"), zlib.compress(bytes(8 * n))))

    import liverseg.model_file as mf
    arch = mf.paper_architecture()
    arch["conv_channels"] = [2, 2, 2, 2, 2, 2]
    arch["conv_kernels"] = [[3, 3, 3]] * 5 + [[1, 1, 1]]
    arch["main_deconv_channels"] = 2
    arch["branch2_deconv_channels"] = 2
    for seed in range(2):
        buffer = Path(out) / "tmp.safetensors"
        out.mkdir(parents=True, exist_ok=True)
        mf.save_model(buffer, arch, mf.random_weights(arch, seed=seed))
        seeds["model"].append(buffer.read_bytes())
        buffer.unlink()
    # An ensemble (format version 2) of two networks on different grids.
    mf.save_ensemble(buffer, [dict(arch=arch, weights=mf.random_weights(arch, seed=seed),
                                   preprocessing=dict(mf.DEFAULT_PREPROCESSING, spacing_mm=[spacing] * 3))
                              for seed, spacing in ((2, 3.0), (3, 4.0))])
    seeds["model"].append(buffer.read_bytes())
    buffer.unlink()

    rng = np.random.default_rng(0)
    for size in (16, 64, 256, 1024):
        seeds["crf"].append(bytes([4, 4, 3, 0, 0]) + rng.integers(0, 256, size, np.uint8).tobytes())
        seeds["evaluate"].append(bytes([5, 4, 3, 0]) + bytes(26) + rng.integers(0, 256, size, np.uint8).tobytes())
    for target, items in seeds.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(items):
            (folder / f"seed-{i:02d}").write_bytes(item)
        print(f"{target}: {len(items)} seeds")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".build-fuzz/corpus")
