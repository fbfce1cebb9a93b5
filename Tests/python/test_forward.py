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


def test_loss_and_gradient_match_pytorch_autograd(tmp_path):
    """Eq. 3's data term and its gradient for every tensor, on the paper's topology (small
    channels, the paper's kernels), against PyTorch autograd in float64."""
    import torch
    import torch.nn.functional as F
    arch = small_architecture()
    path = tmp_path / "m.safetensors"
    liverseg.save_model(path, arch, liverseg.random_weights(arch, seed=21))
    model = liverseg.Model(path)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((24, 20, 16)).astype(np.float32)
    labels = (rng.random(x.shape) < 0.3).astype(np.uint8)
    losses, gradients = model.loss_and_gradient(x, labels, eta=(0.3, 0.4), threads=2)

    weights, _ = torch_reference.load(str(path))
    for w in weights.values():
        w.requires_grad_(True)
    target = torch.from_numpy(np.ascontiguousarray(labels.transpose(2, 1, 0)).astype(np.int64))[None]
    main, b1, b2 = torch_reference.scores(weights, torch_reference.as_tensor(x))
    terms = [F.cross_entropy(s, target) for s in (main, b1, b2)]
    total = terms[0] + 0.3 * terms[1] + 0.4 * terms[2]
    total.backward()
    for name, value in zip(("total", "main", "branch1", "branch2"), [total] + terms):
        assert abs(losses[name] - value.item()) <= 1e-5 * abs(value.item())
    for name, g in gradients.items():
        ref = weights[name].grad.numpy()
        assert np.abs(g - ref).max() <= 1e-4 * np.abs(ref).max(), name


def test_loss_and_gradient_reject_bad_labels(small_model):
    x = np.zeros((8, 8, 8), np.float32)
    labels = np.zeros(x.shape, np.uint8)
    labels[1, 1, 1] = 2
    with pytest.raises(liverseg.Error, match=r"labels\[\d+\] = 2 is not a class index below 2"):
        small_model.loss_and_gradient(x, labels)
    with pytest.raises(liverseg.Error, match="eta2"):
        small_model.loss_and_gradient(x, np.zeros_like(labels), eta=(0.3, float("nan")))
