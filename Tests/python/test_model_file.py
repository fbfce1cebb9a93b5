"""Model files: the Python writer, the safetensors package, and every malformed case."""
import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import liverseg
from liverseg import _lib
from liverseg.model_file import metadata_document, safetensors_bytes
from conftest import ROOT, small_architecture


@pytest.fixture
def parts():
    arch = small_architecture()
    weights = liverseg.random_weights(arch, seed=2)
    doc = metadata_document(arch)
    return arch, weights, doc


def build(weights, doc, shapes=None):
    return safetensors_bytes(weights, {"liverseg": json.dumps(doc)})


def load_bytes(data):
    return liverseg.Model(data=data)


def test_round_trip_through_safetensors_and_liverseg(tmp_path, parts):
    arch, weights, _ = parts
    path = tmp_path / "m.safetensors"
    liverseg.save_model(path, arch, weights, provenance={"note": "test"})
    loaded = load_file(str(path))
    assert set(loaded) == set(weights)
    for name, value in weights.items():
        assert loaded[name].dtype == np.float32 and np.array_equal(loaded[name], value)
    with safe_open(str(path), "np") as f:
        doc = json.loads(f.metadata()["liverseg"])
    assert doc["architecture"] == arch and doc["provenance"] == {"note": "test"}
    model = liverseg.Model(path)
    info = model.info
    assert info["conv_channels"] == arch["conv_channels"]
    assert info["conv_kernels"] == arch["conv_kernels"]
    assert info["n_parameters"] == sum(int(np.prod(s)) for _, s in liverseg.parameter_shapes(arch))
    assert info["orientation"] == "RAS" and info["fusion_tau"] == [0.2, 0.2]
    assert model.metadata == doc
    # Loading from memory gives the same network.
    x = np.random.default_rng(0).standard_normal((8, 8, 8)).astype(np.float32)
    same = liverseg.Model(data=path.read_bytes()).forward(x)
    for a, b in zip(model.forward(x), same):
        assert np.array_equal(a, b)


def expect(data, status, pattern):
    with pytest.raises(liverseg.Error, match=pattern) as e:
        load_bytes(data)
    assert e.value.status == status


def test_header_length_beyond_file(parts):
    _, w, doc = parts
    data = bytearray(build(w, doc))
    data[:8] = struct.pack("<Q", len(data))
    expect(bytes(data), _lib.INVALID_MODEL, "runs past the end")


def test_file_shorter_than_length_field():
    expect(b"\x01\x00", _lib.INVALID_MODEL, "shorter than the 8-byte")


def test_bad_json(parts):
    text = b'{"a": [1, 2'
    expect(struct.pack("<Q", len(text)) + text, _lib.INVALID_MODEL, "not valid JSON")


def test_unknown_dtype(parts):
    _, w, doc = parts
    data = build(w, doc).replace(b'"dtype":"F32"', b'"dtype":"F33"', 1)
    expect(data, _lib.INVALID_MODEL, 'unknown dtype "F33"')


def test_wrong_dtype(parts):
    _, w, doc = parts
    w = dict(w)
    data = bytearray(build(w, doc))
    # Relabel the first tensor as I32: same size, known dtype, not what a model stores.
    data = bytes(data).replace(b'"dtype":"F32"', b'"dtype":"I32"', 1)
    expect(data, _lib.INVALID_MODEL, "has dtype I32")


def test_shape_not_matching_architecture(parts):
    _, w, doc = parts
    w = dict(w)
    w["conv4.weight"] = np.zeros((4, 4, 5, 7, 6), np.float32)  # kx 6 instead of 7
    expect(build(w, doc), _lib.INVALID_MODEL, r'conv4.weight" has shape \[4, 4, 5, 7, 6\]')


def test_missing_and_extra_tensors(parts):
    _, w, doc = parts
    missing = {k: v for k, v in w.items() if k != "deconv9.bias"}
    expect(build(missing, doc), _lib.INVALID_MODEL, 'deconv9.bias" is missing')
    extra = dict(w, stray=np.zeros(3, np.float32))
    expect(build(extra, doc), _lib.INVALID_MODEL, '"stray" is not part of the architecture')


def test_offsets_outside_data(parts):
    _, w, doc = parts
    data = build(w, doc)
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_len])
    name = "conv1.bias"
    begin, end = header[name]["data_offsets"]
    size = len(data) - 8 - header_len
    header[name]["data_offsets"] = [size - 4, size - 4 + (end - begin)]
    text = json.dumps(header).encode()
    expect(struct.pack("<Q", len(text)) + text + data[8 + header_len:], _lib.INVALID_MODEL, "run past")


def test_overlapping_offsets(parts):
    _, w, doc = parts
    data = build(w, doc)
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_len])
    a, b = header["conv1.bias"]["data_offsets"]
    c, d = header["conv2.bias"]["data_offsets"]
    header["conv2.bias"]["data_offsets"] = [a, a + (d - c)]   # same length, on top of conv1.bias
    text = json.dumps(header).encode()
    expect(struct.pack("<Q", len(text)) + text + data[8 + header_len:], _lib.INVALID_MODEL, "overlap")


def test_truncated_file(parts):
    _, w, doc = parts
    data = build(w, doc)
    expect(data[:-10], _lib.INVALID_MODEL, "truncated")


def test_non_finite_weight(parts):
    _, w, doc = parts
    w = dict(w)
    bad = w["conv5.weight"].copy()
    bad.flat[17] = np.inf
    w["conv5.weight"] = bad
    expect(build(w, doc), _lib.INVALID_MODEL, r'conv5.weight" has a non-finite value at flat index 17')


def test_unknown_format_version(parts):
    _, w, doc = parts
    expect(build(w, dict(doc, format_version=3)), _lib.UNSUPPORTED, "format version 3; this build reads versions 1 and 2")


def test_metadata_errors_name_the_field(parts):
    _, w, doc = parts
    bad = json.loads(json.dumps(doc))
    bad["preprocessing"]["orientation"] = "RAR"
    expect(build(w, bad), _lib.INVALID_MODEL, "preprocessing.orientation")
    bad = json.loads(json.dumps(doc))
    bad["fusion"]["tau"] = [0.7, 0.6]
    expect(build(w, bad), _lib.INVALID_MODEL, "fusion.tau")
    bad = json.loads(json.dumps(doc))
    bad["architecture"]["conv_kernels"][2] = [4, 7, 5]
    expect(build(w, bad), _lib.INVALID_MODEL, "conv4 kernel")
    expect(safetensors_bytes(w, {}), _lib.INVALID_MODEL, 'no "liverseg" document')


def test_missing_file_is_an_io_error(tmp_path):
    with pytest.raises(liverseg.Error, match="cannot open .*nope.safetensors") as e:
        liverseg.Model(tmp_path / "nope.safetensors")
    assert e.value.status == _lib.IO_ERROR


def test_python_writer_checks_shapes(tmp_path, parts):
    arch, w, _ = parts
    w = dict(w, **{"conv1.bias": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match="conv1.bias"):
        liverseg.save_model(tmp_path / "x.safetensors", arch, w)
    assert not (tmp_path / "x.safetensors").exists()


def test_swift_and_python_spell_the_same_tensors():
    """The bundled model — networks written by the Swift trainer from
    DSNArchitecture.parameterTable, combined by `liverseg ensemble` — holds exactly the
    tensors the Python writer's parameter_shapes names, with each network's prefix, in file
    order."""
    path = ROOT / "models" / "liver-default.safetensors"
    with safe_open(str(path), "np") as f:
        networks = json.loads(f.metadata()["liverseg"])["networks"]
        written = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8:8 + header_length])
    file_order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    expected = [(f"networks.{k}.{name}", shape) for k, network in enumerate(networks)
                for name, shape in liverseg.parameter_shapes(network["architecture"])]
    assert len(networks) == 2 and file_order == [name for name, _ in expected]
    assert written == {name: tuple(shape) for name, shape in expected}
