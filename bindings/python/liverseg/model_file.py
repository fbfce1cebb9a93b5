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


def save_model(path, arch, weights, preprocessing=None, fusion_tau=(0.2, 0.2), crf=None, provenance=None):
    """Writes a model file atomically. `weights` maps tensor names to arrays of the shapes
    given by parameter_shapes(arch) (PyTorch Conv3d / ConvTranspose3d layouts)."""
    tensors = {}
    for name, shape in parameter_shapes(arch):
        if name not in weights:
            raise ValueError(f"weights lack tensor {name}")
        a = np.asarray(weights[name], dtype=np.float32)
        if a.shape != tuple(shape):
            raise ValueError(f"tensor {name} has shape {a.shape}, the architecture needs {tuple(shape)}")
        tensors[name] = a
    extra = set(weights) - set(tensors)
    if extra:
        raise ValueError(f"weights hold tensors the architecture lacks: {sorted(extra)}")
    doc = metadata_document(arch, preprocessing, fusion_tau, crf, provenance)
    data = safetensors_bytes(tensors, {"liverseg": json.dumps(doc)})
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".liverseg-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
