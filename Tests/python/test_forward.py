"""The network's forward pass against PyTorch (float64) on random inputs and weights."""
import numpy as np
import pytest

import liverseg
import torch_reference
from conftest import small_architecture


def relative_error(ours, ref):
    return np.abs(ours - ref).max() / np.abs(ref).max()


@pytest.mark.parametrize("kernels,shape", [
    (None, (36, 28, 20)),                                                  # paper kernels
    ([[3, 5, 3], [5, 3, 1], [3, 3, 3], [1, 3, 5], [3, 1, 3], [1, 1, 1]], (24, 16, 12)),  # anisotropic mix
])
def test_forward_matches_pytorch(tmp_path, kernels, shape):
    arch = small_architecture(kernels)
    path = tmp_path / "m.safetensors"
    liverseg.save_model(path, arch, liverseg.random_weights(arch, seed=11))
    model = liverseg.Model(path)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    weights, _ = torch_reference.load(str(path))
    for ours, ref in zip(model.forward(x, threads=2), torch_reference.forward(weights, x)):
        assert relative_error(ours, ref) <= 1e-5


def test_paper_size_network_matches_pytorch(tmp_path):
    """The paper's channel counts and kernels on a small grid."""
    arch = liverseg.paper_architecture()
    path = tmp_path / "paper.safetensors"
    liverseg.save_model(path, arch, liverseg.random_weights(arch, seed=3))
    model = liverseg.Model(path)
    x = np.random.default_rng(2).standard_normal((32, 24, 16)).astype(np.float32)
    weights, _ = torch_reference.load(str(path))
    for ours, ref in zip(model.forward(x), torch_reference.forward(weights, x)):
        assert relative_error(ours, ref) <= 1e-5


def test_forward_is_deterministic_across_thread_counts(small_model):
    x = np.random.default_rng(4).standard_normal((20, 16, 12)).astype(np.float32)
    one = small_model.forward(x, threads=1)
    two = small_model.forward(x, threads=2)
    five = small_model.forward(x, threads=5)
    for a, b, c in zip(one, two, five):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_forward_rejects_bad_shapes(small_model):
    with pytest.raises(liverseg.Error, match="multiple of 4"):
        small_model.forward(np.zeros((10, 8, 8), np.float32))
    x = np.zeros((8, 8, 8), np.float32)
    x[1, 2, 3] = np.nan
    with pytest.raises(liverseg.Error, match="not finite"):
        small_model.forward(x)
