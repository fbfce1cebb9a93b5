"""Writing liverseg model files (safetensors + a "liverseg" metadata document).

Written independently of the Swift loader, from the format description in
docs/model-format.md, so weights trained anywhere (PyTorch included) load into liverseg.
Files also read back with the `safetensors` package.
"""
import json
import os
import struct
import tempfile

import numpy as np

FORMAT_VERSION = 1
ENSEMBLE_FORMAT_VERSION = 2

CONV_NAMES = ["conv1", "conv2", "conv4", "conv5", "conv7", "conv8"]


def paper_architecture():
    """The paper's 3D DSN (REFERENCE §1); up-sampling channel counts are our choice."""
    return {
        "name": "dsn3d",
        "in_channels": 1,
        "conv_channels": [8, 8, 16, 32, 32, 32],
        "conv_kernels": [[9, 9, 7], [9, 9, 7], [7, 7, 5], [7, 7, 5], [5, 5, 3], [1, 1, 1]],
        "main_deconv_channels": 16,
        "branch2_deconv_channels": 16,
        "classes": 2,
    }


# Preprocessing.default in Sources/LiversegPipeline/Model.swift (what `liverseg train` uses
# unless told otherwise); Tests/python/test_model_file.py holds the two equal.
DEFAULT_PREPROCESSING = {
    "spacing_mm": [3.0, 3.0, 3.0],
    "orientation": "RAS",
    "hu_window": [-200.0, 300.0],
    "mean": 50.0,
    "std": 125.0,
}


def parameter_shapes(arch):
    """(name, shape) of every tensor, in file order. Kernels (x, y, z) become [.., kz, ky, kx]."""
    shapes = []
    cin = arch["in_channels"]
    for name, cout, (kx, ky, kz) in zip(CONV_NAMES, arch["conv_channels"], arch["conv_kernels"]):
        shapes += [(f"{name}.weight", (cout, cin, kz, ky, kx)), (f"{name}.bias", (cout,))]
        cin = cout
    c = arch["conv_channels"]
    k = arch["classes"]
    for name, i, o in [("deconv9", c[5], arch["main_deconv_channels"]),
                       ("deconv10", arch["main_deconv_channels"], k),
                       ("branch1.deconv", c[1], k),
                       ("branch2.deconv1", c[3], arch["branch2_deconv_channels"]),
                       ("branch2.deconv2", arch["branch2_deconv_channels"], k)]:
        shapes += [(f"{name}.weight", (i, o, 3, 3, 3)), (f"{name}.bias", (o,))]
    return shapes


def random_weights(arch, seed=0):
    """He-scaled Gaussian weights and small biases: a model whose outputs are not trivial."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in parameter_shapes(arch):
        if name.endswith(".bias"):
            weights[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if "conv" in name and "deconv" not in name else shape[0] * 27
            weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return weights


def metadata_document(arch, preprocessing=None, fusion_tau=(0.2, 0.2), crf=None, provenance=None):
    """The "liverseg" metadata JSON object stored in __metadata__."""
    doc = {
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "preprocessing": dict(preprocessing or DEFAULT_PREPROCESSING),
        "fusion": {"tau": [float(t) for t in fusion_tau]},
    }
    if crf is not None:
        doc["crf"] = crf
    if provenance is not None:
        doc["provenance"] = provenance
    return doc


def safetensors_bytes(tensors, metadata):
    """Serialises float32 arrays plus a string→string metadata map in safetensors layout."""
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, array in tensors.items():
        a = np.ascontiguousarray(array, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the reference writer aligns data to 8 bytes
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def checked_tensors(arch, weights, prefix=""):
    """`weights` as float32 arrays named prefix + name, checked against parameter_shapes(arch)."""
    tensors = {}
    for name, shape in parameter_shapes(arch):
        if name not in weights:
            raise ValueError(f"weights lack tensor {name}")
        a = np.asarray(weights[name], dtype=np.float32)
        if a.shape != tuple(shape):
            raise ValueError(f"tensor {name} has shape {a.shape}, the architecture needs {tuple(shape)}")
        tensors[prefix + name] = a
    extra = set(weights) - {name for name, _ in parameter_shapes(arch)}
    if extra:
        raise ValueError(f"weights hold tensors the architecture lacks: {sorted(extra)}")
    return tensors


def write_atomically(path, data):
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".liverseg-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_model(path, arch, weights, preprocessing=None, fusion_tau=(0.2, 0.2), crf=None, provenance=None):
    """Writes a model file atomically. `weights` maps tensor names to arrays of the shapes
    given by parameter_shapes(arch) (PyTorch Conv3d / ConvTranspose3d layouts)."""
    doc = metadata_document(arch, preprocessing, fusion_tau, crf, provenance)
    write_atomically(path, safetensors_bytes(checked_tensors(arch, weights), {"liverseg": json.dumps(doc)}))


def save_ensemble(path, networks, crf=None):
    """Writes an ensemble model file (format version 2) atomically: `networks` is a list of
    dicts with the keys arch and weights (as save_model's) and optionally preprocessing,
    fusion_tau and provenance. Network k's tensors are named "networks.k." + name."""
    tensors, sections = {}, []
    for k, n in enumerate(networks):
        tensors.update(checked_tensors(n["arch"], n["weights"], prefix=f"networks.{k}."))
        section = metadata_document(n["arch"], n.get("preprocessing"), n.get("fusion_tau", (0.2, 0.2)),
                                    provenance=n.get("provenance"))
        del section["format_version"]
        sections.append(section)
    doc = {"format_version": ENSEMBLE_FORMAT_VERSION, "networks": sections}
    if crf is not None:
        doc["crf"] = crf
    write_atomically(path, safetensors_bytes(tensors, {"liverseg": json.dumps(doc)}))
