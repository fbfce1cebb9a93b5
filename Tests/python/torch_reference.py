"""An independent PyTorch (CPU, float64) implementation of the 3D DSN and of liverseg's
pre-processing, built from a model file's tensors and metadata for comparisons."""
import json

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from safetensors import safe_open

CONV_NAMES = ["conv1", "conv2", "conv4", "conv5", "conv7", "conv8"]


def load(path):
    """(weights as float64 torch tensors, metadata document) of a model file."""
    tensors = {k: torch.from_numpy(v.astype(np.float64)) for k, v in load_file(path).items()}
    with safe_open(path, "np") as f:
        doc = json.loads(f.metadata()["liverseg"])
    return tensors, doc


def _deconv(x, w, b):
    return F.conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1)


def scores(weights, x):
    """Class scores (main, branch1, branch2), each [1, classes, Z, Y, X], of an input tensor
    [1, 1, Z, Y, X]; differentiable with respect to the weight tensors."""
    def conv(name, t):
        w = weights[f"{name}.weight"]
        pad = [s // 2 for s in w.shape[2:]]
        return F.relu(F.conv3d(t, w, weights[f"{name}.bias"], padding=pad))
    def up(name, t):
        return _deconv(t, weights[f"{name}.weight"], weights[f"{name}.bias"])
    pool1 = F.max_pool3d(conv("conv2", conv("conv1", x)), 2)
    b1 = up("branch1.deconv", pool1)
    pool2 = F.max_pool3d(conv("conv5", conv("conv4", pool1)), 2)
    b2 = up("branch2.deconv2", F.relu(up("branch2.deconv1", pool2)))
    main = up("deconv10", F.relu(up("deconv9", conv("conv8", conv("conv7", pool2)))))
    return main, b1, b2


def as_tensor(volume_xyz, dtype=np.float64):
    """A numpy [x, y, z] array as a torch [1, 1, Z, Y, X] tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(volume_xyz, dtype=dtype).transpose(2, 1, 0)))[None, None]


def forward(weights, volume_xyz):
    """Liver probabilities (main, branch1, branch2) as [x, y, z] float64 arrays for a
    normalised [x, y, z] input (extents multiples of 4)."""
    def liver(s):
        return torch.softmax(s, dim=1)[0, 1].numpy().transpose(2, 1, 0)
    return tuple(liver(s) for s in scores(weights, as_tensor(volume_xyz)))
