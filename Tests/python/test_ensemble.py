"""Ensemble model files (format version 2): written by the Python writer (independent of the
Swift loader), read by the library, segmented as the mean of their networks' probabilities;
the CRF and post-processing on that mean checked against the scipy re-implementation of
tools/ensemble_loo.py."""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import liverseg
from conftest import ROOT, small_architecture

sys.path.insert(0, str(ROOT / "tools"))
from ensemble_loo import segment_probability  # noqa: E402


def network(seed, spacing, fusion_tau=(0.1, 0.1), kernels=None):
    """A small random network whose class-score layers are scaled up so that its liver
    probability spreads over (0, 1) (random weights alone give 0.45-0.55 everywhere, which
    the CRF turns into an empty mask)."""
    arch = small_architecture(kernels)
    pre = dict(liverseg.model_file.DEFAULT_PREPROCESSING, spacing_mm=spacing)
    weights = liverseg.random_weights(arch, seed=seed)
    for name in ("deconv10", "branch1.deconv", "branch2.deconv2"):
        weights[name + ".weight"] = weights[name + ".weight"] * 300
        weights[name + ".bias"] = weights[name + ".bias"] * 0
    return {"arch": arch, "weights": weights, "preprocessing": pre, "fusion_tau": fusion_tau,
            "provenance": {"seed": seed}}


CRF = dict(liverseg.crf_default_params(), n_iterations=3, mu1=2, mu2=1)
NETWORKS = [network(11, [3.0, 3.0, 3.0]), network(12, [4.0, 4.0, 5.0], fusion_tau=(0.2, 0.0),
                                                   kernels=[[5, 5, 3], [5, 5, 3], [3, 3, 3], [3, 3, 3], [3, 3, 1], [1, 1, 1]])]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The ensemble file and each network alone, as version-1 files."""
    folder = tmp_path_factory.mktemp("ensemble")
    liverseg.save_ensemble(folder / "ensemble.safetensors", NETWORKS, crf=CRF)
    singles = []
    for k, n in enumerate(NETWORKS):
        singles.append(folder / f"network{k}.safetensors")
        liverseg.save_model(singles[-1], n["arch"], n["weights"], n["preprocessing"], n["fusion_tau"], crf=CRF,
                            provenance=n["provenance"])
    return folder / "ensemble.safetensors", singles


def phantom():
    """A CT (HU, [x, y, z]) with a bright organ on the patient's right, 1.5 × 1.5 × 2.5 mm."""
    rng = np.random.default_rng(3)
    ct = rng.normal(-50, 20, size=(60, 52, 30)).astype(np.float32)
    x, y, z = np.ogrid[:60, :52, :30]
    ct[((x - 20) / 14) ** 2 + ((y - 26) / 12) ** 2 + ((z - 15) / 9) ** 2 < 1] += 150
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    return ct, affine


def test_ensemble_info_and_metadata(files):
    ensemble, singles = files
    model = liverseg.Model(ensemble)
    info = model.info
    assert (info["format_version"], info["n_networks"]) == (2, 2)
    assert info["spacing"] == [3.0, 3.0, 3.0] and info["fusion_tau"] == [0.1, 0.1]  # the first network's
    assert [n["preprocessing"]["spacing_mm"] for n in model.metadata["networks"]] == [[3, 3, 3], [4, 4, 5]]
    assert model.metadata["crf"]["n_iterations"] == 3
    single = liverseg.Model(singles[0]).info
    assert (single["format_version"], single["n_networks"]) == (1, 1)


@pytest.mark.parametrize("crf", [False, True])
def test_ensemble_segments_the_mean_of_its_networks(files, crf):
    """The ensemble's probability is (p0 + p1) / 2 of its networks run alone, bit for bit; its
    mask is the CRF and post-processing of that mean (scipy steps) — or its threshold."""
    ensemble, singles = files
    ct, affine = phantom()
    probabilities = [liverseg.Model(s).segment(ct, affine=affine, crf=False, return_probability=True, threads=2)[1]
                     for s in singles]
    mean = (probabilities[0] + probabilities[1]) / 2
    assert not np.array_equal(probabilities[0], probabilities[1])
    mask, probability = liverseg.Model(ensemble).segment(ct, affine=affine, crf=crf, return_probability=True, threads=2)
    assert np.array_equal(probability, mean)
    if crf:
        expected = segment_probability(ct, affine, mean, CRF)
    else:
        expected = segment_probability(ct, affine, mean, dict(CRF, n_iterations=0))
    assert 0.01 < expected.mean() < 0.99
    assert np.array_equal(mask, expected)
    # Without a probability output the mask comes from the slab-by-slab threshold path.
    assert np.array_equal(liverseg.Model(ensemble).segment(ct, affine=affine, crf=crf, threads=1), mask)


def test_cli_ensemble_writes_what_the_python_writer_writes(files, tmp_path):
    """`liverseg ensemble` of the single files gives the same networks, tensors and CRF section."""
    import subprocess
    from test_cli import CLI
    ensemble, singles = files
    out = tmp_path / "cli.safetensors"
    subprocess.run([str(CLI), "ensemble", str(out), *map(str, singles)], check=True)
    ours, theirs = liverseg.Model(out), liverseg.Model(ensemble)
    assert ours.metadata["networks"] == theirs.metadata["networks"]
    assert ours.metadata["crf"] == theirs.metadata["crf"]
    assert ours.metadata["ensemble"]["models"] == list(map(str, singles))
    ct, affine = phantom()
    assert np.array_equal(ours.segment(ct, affine=affine, threads=2), theirs.segment(ct, affine=affine, threads=2))


def edited(path, edit):
    """The file's bytes with `edit(header, document)` applied to its safetensors header and
    liverseg document."""
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    document = json.loads(header["__metadata__"]["liverseg"])
    edit(header, document)
    header["__metadata__"]["liverseg"] = json.dumps(document)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def rename(old, new):
    def edit(header, _):
        header[new] = header.pop(old)
    return edit


def set_key(key, value):
    def edit(_, document):
        document[key] = value
    return edit


def drop_network_section(section):
    def edit(_, document):
        del document["networks"][1][section]
    return edit


@pytest.mark.parametrize("edit, status, message", [
    (set_key("networks", {}), liverseg._lib.INVALID_MODEL, "a \"networks\" array of 1 to 8"),
    (set_key("networks", []), liverseg._lib.INVALID_MODEL, "a \"networks\" array of 1 to 8"),
    (drop_network_section("preprocessing"), liverseg._lib.INVALID_MODEL, "no networks[1].preprocessing object"),
    (rename("networks.1.conv1.weight", "conv1.weight"), liverseg._lib.INVALID_MODEL, "tensor \"networks.1.conv1.weight\" is missing"),
    (rename("networks.1.conv1.weight", "networks.2.conv1.weight"), liverseg._lib.INVALID_MODEL, "tensor \"networks.1.conv1.weight\" is missing"),
])
def test_broken_ensemble_files_are_refused_by_name(files, edit, status, message):
    data = edited(files[0], edit)
    with pytest.raises(liverseg.Error) as error:
        liverseg.Model(data=data)
    assert error.value.status == status and message in str(error.value)


def test_a_tensor_beyond_the_networks_is_refused(files):
    def extra(header, document):
        document["networks"] = document["networks"][:1]
    with pytest.raises(liverseg.Error, match="tensor \"networks.1.[a-z0-9.]*\" is not part of the architecture"):
        liverseg.Model(data=edited(files[0], extra))


def test_at_most_eight_networks(tmp_path):
    path = tmp_path / "nine.safetensors"
    liverseg.save_ensemble(path, [network(k, [4.0, 4.0, 4.0]) for k in range(9)])
    with pytest.raises(liverseg.Error, match="1 to 8"):
        liverseg.Model(path)
    liverseg.save_ensemble(path, [network(k, [4.0, 4.0, 4.0]) for k in range(8)])
    assert liverseg.Model(path).info["n_networks"] == 8


def test_single_network_calls_use_the_first_network(files):
    """preprocess, forward and loss_and_gradient of an ensemble are its first network's."""
    ensemble, singles = liverseg.Model(files[0]), liverseg.Model(files[1][0])
    ct, affine = phantom()
    x = ensemble.preprocess(ct, affine=affine)
    assert np.array_equal(x, singles.preprocess(ct, affine=affine))
    x = np.ascontiguousarray(x[:16, :16, :8])
    for a, b in zip(ensemble.forward(x), singles.forward(x)):
        assert np.array_equal(a, b)
    labels = (x > 0).astype(np.uint8)
    (loss, gradients), (expected_loss, expected) = (m.loss_and_gradient(x, labels) for m in (ensemble, singles))
    assert loss == expected_loss and gradients.keys() == expected.keys()
    assert all(np.array_equal(gradients[k], expected[k]) for k in expected)
