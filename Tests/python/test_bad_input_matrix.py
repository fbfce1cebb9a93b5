"""The bad-input matrix: every kind of bad argument, file or model through the C API
(ctypes) and the CLI gets its documented status (exit code) and a message naming the
problem. One table per surface; each row is (name, call, expected status, message part)."""
import ctypes
import gzip
import json
import math
import os
import struct

import numpy as np
import pytest

import liverseg
from liverseg import _lib, crf, imageio, metrics
from liverseg._lib import lib
from liverseg.model_file import metadata_document, safetensors_bytes
from conftest import small_architecture
from test_cli import run as run_cli

OK, INVALID, IO, MODEL = _lib.OK, _lib.INVALID_ARGUMENT, _lib.IO_ERROR, _lib.INVALID_MODEL
D = ctypes.c_double


def ras(spacing=(2.0, 2.0, 2.0)):
    return np.diag([*spacing, 1.0])


def rotation_z(degrees, spacing=(2.0, 2.0, 2.0)):
    a = math.radians(degrees)
    m = np.eye(4)
    m[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    m[:3, :3] = m[:3, :3] @ np.diag(spacing)
    return m


class Call:
    """A liverseg_segment / liverseg_refine_crf call on a small volume, with one thing changed."""

    def __init__(self, model, shape=(12, 12, 8), dtype=np.float32, spacing=(2.0, 2.0, 2.0), matrix=None):
        self.model = model
        self.array = np.asfortranarray(np.zeros(shape, dtype))
        self.volume = _lib.Volume()
        self.volume.data = self.array.ctypes.data
        self.volume.dtype = {np.dtype(np.int16): 1, np.dtype(np.float32): 3, np.dtype(np.float64): 10}[self.array.dtype]
        self.volume.dims[:] = shape
        self.volume.spacing[:] = spacing
        self.matrix = None
        if matrix is not None:
            self.matrix = np.ascontiguousarray(matrix, dtype=np.float64)
            self.volume.ijk_to_ras = self.matrix.ctypes.data_as(ctypes.POINTER(D))
        self.params = _lib.segment_params()
        self.crf_params = crf.crf_params_struct({}, 0)
        n = int(np.prod(shape))
        self.mask = np.zeros(n, np.uint8)
        self.probability = np.full(n, 0.5, np.float32)

    def segment(self, model=True, volume=True, mask=True):
        return lib.liverseg_segment(self.model._handle if model else None, ctypes.byref(self.volume) if volume else None,
                                    ctypes.byref(self.params), self.mask.ctypes.data if mask else None, None)

    def refine(self, probability=True):
        return lib.liverseg_refine_crf(ctypes.byref(self.volume), self.probability.ctypes.data if probability else None,
                                       ctypes.byref(self.crf_params), self.mask.ctypes.data)


def with_(change, call="segment", **kw):
    def run(model):
        c = Call(model, **kw)
        change(c)
        return getattr(c, call)()
    return run


def set_voxel(value, index=7):
    def change(c):
        c.array.reshape(-1, order="F")[index] = value   # flat index in memory (x fastest)
    return change


def setp(field, value, which="params"):
    return lambda c: setattr(getattr(c, which), field, value)


def setv(field, value):
    return lambda c: setattr(c.volume, field, value)


def dims(*values):
    def change(c):
        c.volume.dims[:] = values
    return change


def spacing(*values):
    def change(c):
        c.volume.spacing[:] = values
    return change


def last_row(c):
    c.matrix[3] = [0, 0, 1e-3, 1]


def singular(c):
    c.matrix[:3, 2] = (c.matrix[:3, 0] + c.matrix[:3, 1]) / math.sqrt(2)


def two_along_x(c):
    """Columns 0 and 1 at 30° and 20° from x: independent, but both nearest to R/L."""
    for column, degrees in ((0, 30), (1, 20)):
        a = math.radians(degrees)
        c.matrix[:3, column] = [2 * math.cos(a), 2 * math.sin(a), 0]


def tiny_theta_beta(c):
    """A 1000 HU range over θβ = 1e-30 HU would overflow Int32 lattice keys."""
    set_voxel(1000)(c)
    c.crf_params.theta_beta_hu = 1e-30


def sheared(c):
    c.matrix[0, 1] = 0.3   # column 1 no longer orthogonal to column 0 (gantry tilt)
    c.matrix[1, 1] = math.sqrt(4 - 0.09)


C_API = [
    # name, call(model) -> status, status, message part
    ("segment: model NULL", lambda m: Call(m).segment(model=False), INVALID, "model is NULL"),
    ("segment: volume NULL", lambda m: Call(m).segment(volume=False), INVALID, "volume is NULL"),
    ("segment: out_mask NULL", lambda m: Call(m).segment(mask=False), INVALID, "out_mask is NULL"),
    ("segment: volume->data NULL", with_(setv("data", None)), INVALID, "volume->data is NULL"),
    ("segment: freed model", lambda m: lib.liverseg_segment(ctypes.c_void_p(16), None, None, None, None), INVALID,
     "not a live liverseg_model"),
    ("segment: zero dim", with_(dims(12, 0, 8)), INVALID, "must all be at least 1"),
    ("segment: negative dim (size_t -1)", with_(dims(12, 2**64 - 1, 8)), INVALID, "is too large"),
    ("segment: overflowing dims", with_(dims(2**40, 2**40, 8)), INVALID, "volume dims"),
    ("segment: NaN voxel", with_(set_voxel(np.nan)), INVALID, "voxel 7 (flat index) is nan"),
    ("segment: +Inf voxel", with_(set_voxel(np.inf)), INVALID, "voxel 7 (flat index) is inf"),
    ("segment: -Inf float64 voxel", with_(set_voxel(-np.inf), dtype=np.float64), INVALID, "voxel 7"),
    ("segment: float64 beyond float32", with_(set_voxel(1e300), dtype=np.float64), INVALID, "voxel 7"),
    ("segment: NaN spacing", with_(spacing(2, math.nan, 2)), INVALID, "spacing"),
    ("segment: Inf spacing", with_(spacing(2, 2, math.inf)), INVALID, "spacing"),
    ("segment: zero spacing", with_(spacing(0, 2, 2)), INVALID, "spacing"),
    ("segment: negative spacing", with_(spacing(2, -2, 2)), INVALID, "spacing"),
    ("segment: huge spacing", with_(spacing(3e38, 2, 2)), INVALID, "more than the 4096"),
    ("segment: NaN in ijk_to_ras", with_(lambda c: c.matrix.__setitem__((0, 3), math.nan), matrix=ras()), INVALID,
     "16 finite numbers"),
    ("segment: last row not 0 0 0 1", with_(last_row, matrix=ras()), INVALID, "last row"),
    ("segment: singular ijk_to_ras", with_(singular, matrix=ras()), INVALID, "singular"),
    ("segment: column norm differs from spacing", with_(spacing(2, 2, 3), matrix=ras()), INVALID,
     "column 2 has length 2.0 mm"),
    ("segment: two columns nearest to one RAS axis", with_(two_along_x, matrix=ras()), INVALID,
     "no clear axis orientation"),
    ("segment: 10° oblique (nearest axes, accepted)", with_(lambda c: None, matrix=rotation_z(10)), OK, ""),
    ("segment: non-orthogonal (sheared, accepted)", with_(sheared, matrix=ras()), OK, ""),
    ("segment: unknown dtype 0", with_(setv("dtype", 0)), INVALID, "dtype"),
    ("segment: unknown dtype 11", with_(setv("dtype", 11)), INVALID, "dtype"),
    ("segment: params struct_size 0", with_(setp("struct_size", 0)), INVALID, "struct_size is 0"),
    ("segment: params struct_size newer", with_(setp("struct_size", 4096)), INVALID, "newer liverseg header"),
    ("segment: threshold NaN", with_(setp("threshold", math.nan)), INVALID, "threshold"),
    ("segment: threshold 1", with_(setp("threshold", 1.0)), INVALID, "threshold"),
    ("segment: n_threads -1", with_(setp("n_threads", -1)), INVALID, "n_threads"),
    ("segment: unknown postprocess bit", with_(setp("postprocess", 8)), INVALID, "postprocess 8"),
    ("segment: max_tile_voxels too small", with_(setp("max_tile_voxels", 10)), INVALID, "max_tile_voxels 10"),
    ("crf: probability NULL", lambda m: Call(m).refine(probability=False), INVALID, "probability is NULL"),
    ("crf: NaN probability", with_(lambda c: c.probability.__setitem__(3, np.nan), call="refine"), INVALID,
     "probability[3]"),
    ("crf: probability 1.5", with_(lambda c: c.probability.__setitem__(3, 1.5), call="refine"), INVALID,
     "probability[3] = 1.5"),
    ("crf: Inf voxel", with_(set_voxel(np.inf), call="refine"), INVALID, "voxel 7"),
    ("crf: unknown mode", with_(setp("mode", 7, "crf_params"), call="refine"), INVALID, "params->mode 7"),
    ("crf: unknown normalisation", with_(setp("normalisation", 5, "crf_params"), call="refine"), INVALID,
     "normalisation 5"),
    ("crf: struct_size wrong", with_(setp("struct_size", 8, "crf_params"), call="refine"), INVALID, "struct_size is 8"),
    ("crf: n_iterations -1", with_(setp("n_iterations", -1, "crf_params"), call="refine"), INVALID, "n_iterations"),
    ("crf: mu1 NaN", with_(setp("mu1", math.nan, "crf_params"), call="refine"), INVALID, "mu1"),
    ("crf: mu2 beyond float", with_(setp("mu2", 1e300, "crf_params"), call="refine"), INVALID, "mu2"),
    ("crf: theta_alpha 0", with_(setp("theta_alpha_mm", 0.0, "crf_params"), call="refine"), INVALID, "theta_alpha_mm"),
    ("crf: theta_beta Inf", with_(setp("theta_beta_hu", math.inf, "crf_params"), call="refine"), INVALID,
     "theta_beta_hu"),
    ("crf: theta too small for lattice keys", with_(tiny_theta_beta, call="refine"), INVALID, "too small"),
    ("crf: uncertain_probability 0.5", with_(setp("uncertain_probability", 0.5, "crf_params"), call="refine"), INVALID,
     "uncertain_probability"),
    ("crf: n_threads 5000", with_(setp("n_threads", 5000, "crf_params"), call="refine"), INVALID, "n_threads"),
]


@pytest.mark.parametrize("name,call,status,message", C_API, ids=[row[0] for row in C_API])
def test_c_api(small_model, name, call, status, message):
    got = call(small_model)
    text = lib.liverseg_last_error().decode()
    assert got == status, (name, _lib.lib.liverseg_status_name(got), text)
    assert message in text, (name, text)


def evaluate_call(change):
    def run():
        a = np.zeros((6, 6, 6), np.uint8)
        args = dict(seg=a.ctypes.data, ref=a.ctypes.data, dims=(ctypes.c_size_t * 3)(6, 6, 6),
                    spacing=(D * 3)(1, 1, 1), connectivity=18, threads=0, out=metrics.Metrics())
        args["out"].struct_size = ctypes.sizeof(metrics.Metrics)
        change(args)
        return lib.liverseg_evaluate(args["seg"], args["ref"], args["dims"], args["spacing"], args["connectivity"],
                                     args["threads"], ctypes.byref(args["out"]) if args["out"] is not None else None)
    return run


def change(key, value):
    return lambda a: a.__setitem__(key, value)


EVALUATE = [
    ("evaluate: segmentation NULL", evaluate_call(change("seg", None)), INVALID, "segmentation is NULL"),
    ("evaluate: out_metrics NULL", evaluate_call(change("out", None)), INVALID, "out_metrics is NULL"),
    ("evaluate: zero dim", evaluate_call(change("dims", (ctypes.c_size_t * 3)(6, 0, 6))), INVALID, "at least 1"),
    ("evaluate: overflowing dims", evaluate_call(change("dims", (ctypes.c_size_t * 3)(2**40, 2**40, 6))), INVALID,
     "dims"),
    ("evaluate: NaN spacing", evaluate_call(change("spacing", (D * 3)(1, math.nan, 1))), INVALID, "spacing"),
    ("evaluate: connectivity 8", evaluate_call(change("connectivity", 8)), INVALID, "connectivity 8"),
    ("evaluate: n_threads -2", evaluate_call(change("threads", -2)), INVALID, "n_threads"),
    ("evaluate: struct_size 0", evaluate_call(lambda a: setattr(a["out"], "struct_size", 0)), INVALID,
     "out_metrics.struct_size is 0"),
]


def model_bytes(mutate=None):
    arch = small_architecture()
    weights = liverseg.random_weights(arch, seed=2)
    doc = metadata_document(arch)
    data = safetensors_bytes(weights, {"liverseg": json.dumps(doc)})
    return mutate(data) if mutate else data


def lying_shape(data):
    """conv1.weight's header shape says one more output channel than its bytes hold."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["conv1.weight"]["shape"][0] += 1
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def lying_architecture(data):
    """The metadata's architecture says conv1 has 5 channels; the tensors have 3."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    doc = json.loads(header["__metadata__"]["liverseg"])
    doc["architecture"]["conv_channels"][0] = 5
    header["__metadata__"]["liverseg"] = json.dumps(doc)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def load_memory(data):
    def run():
        out = ctypes.c_void_p()
        buffer = ctypes.create_string_buffer(data, max(1, len(data))) if data is not None else None
        status = lib.liverseg_model_load_memory(buffer, 0 if data is None else len(data), ctypes.byref(out))
        assert not out.value or status == OK
        if out.value:
            lib.liverseg_model_free(out)
        return status
    return run


def load_file(path_factory):
    def run(tmp_path):
        path = path_factory(tmp_path)
        out = ctypes.c_void_p()
        return lib.liverseg_model_load_file(None if path is None else str(path).encode(), ctypes.byref(out))
    return run


def fifo(tmp_path):
    path = tmp_path / "fifo.safetensors"
    os.mkfifo(path)
    return path


def read_image(path_factory):
    def run(tmp_path):
        path = path_factory(tmp_path)
        info = imageio.ImageInfo()
        info.struct_size = ctypes.sizeof(imageio.ImageInfo)
        data = ctypes.c_void_p()
        status = lib.liverseg_image_read(str(path).encode(), ctypes.byref(info), ctypes.byref(data))
        assert not data.value or status == OK
        return status
    return run


def nifti_bomb(tmp_path):
    """A 1x1x1 int16 image whose gzip stream inflates to 64 MiB."""
    import nibabel as nib
    raw = nib.Nifti1Image(np.zeros((1, 1, 1), np.int16), np.eye(4)).to_bytes() + bytes(64 << 20)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(raw, 1))
    return path


def nhdr_dev_zero(tmp_path):
    path = tmp_path / "zero.nhdr"
    path.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 64 64 64\nencoding: raw\nendian: little\n"
                    "data file: /dev/zero\n\n")
    return path


def write(name, text):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(text)
        return path
    return make


FILES = [
    ("model file: path NULL", load_file(lambda t: None), INVALID, "path is NULL"),
    ("model file: missing", load_file(lambda t: t / "none.safetensors"), IO, "none.safetensors"),
    ("model file: a folder", load_file(lambda t: t), IO, "not a regular file"),
    ("model file: a FIFO", load_file(fifo), IO, "not a regular file"),
    ("model file: /dev/zero", load_file(lambda t: "/dev/zero"), IO, "not a regular file"),
    ("image: a FIFO", read_image(lambda t: (os.mkfifo(t / "f.nii"), t / "f.nii")[1]), IO, "not a regular file"),
    ("image: decompression bomb", read_image(nifti_bomb), INVALID, "decompresses to more than"),
    ("image: detached data /dev/zero", read_image(nhdr_dev_zero), IO, "not a regular file"),
    ("image: unknown extension", read_image(write("x.png", b"\x89PNG")), INVALID, "unknown image file extension"),
    ("image: truncated NIfTI", read_image(write("t.nii", b"\x5c\x01" + bytes(100))), INVALID, "t.nii"),
]

MODELS = [
    ("model memory: NULL data", load_memory(None), INVALID, "data is NULL"),
    ("model memory: empty", load_memory(b""), MODEL, "0 bytes"),
    ("model memory: tensor lies about its shape", load_memory(model_bytes(lying_shape)), MODEL, "conv1.weight"),
    ("model memory: architecture lies about channels", load_memory(model_bytes(lying_architecture)), MODEL,
     "conv1.weight"),
    ("model memory: truncated", load_memory(model_bytes()[:-100]), MODEL, ""),
]


@pytest.mark.parametrize("name,call,status,message", EVALUATE + MODELS, ids=[r[0] for r in EVALUATE + MODELS])
def test_c_api_evaluate_and_models(name, call, status, message):
    got = call()
    text = lib.liverseg_last_error().decode()
    assert got == status and message in text, (name, got, text)


@pytest.mark.parametrize("name,call,status,message", FILES, ids=[r[0] for r in FILES])
def test_c_api_files(tmp_path, name, call, status, message):
    got = call(tmp_path)
    text = lib.liverseg_last_error().decode()
    assert got == status and message in text, (name, got, text)


CLI = [
    # name, arguments (tmp_path, model) -> list, exit code, stderr part
    ("cli: missing input", lambda t, m: ["segment", t / "none.nii.gz", t / "o.nii.gz", "--model", m], 74, "none.nii.gz"),
    ("cli: FIFO .nii input", lambda t, m: ["segment", (os.mkfifo(t / "f.nii"), t / "f.nii")[1], t / "o.nii.gz",
                                           "--model", m], 74, "not a regular file"),
    ("cli: decompression bomb", lambda t, m: ["segment", nifti_bomb(t), t / "o.nii.gz", "--model", m], 65,
     "decompresses to more than"),
    ("cli: detached /dev/zero", lambda t, m: ["segment", nhdr_dev_zero(t), t / "o.nii.gz", "--model", m], 74,
     "not a regular file"),
    ("cli: model lies about a shape", lambda t, m: ["segment", write("ct.nii", nifti_bytes())(t), t / "o.nii.gz",
                                                    "--model", write("l.safetensors", model_bytes(lying_shape))(t)], 65,
     "conv1.weight"),
    ("cli: model is a folder", lambda t, m: ["segment", write("ct.nii", nifti_bytes())(t), t / "o.nii.gz",
                                             "--model", t], 74, "not a regular file"),
    ("cli: bad output extension", lambda t, m: ["segment", write("ct.nii", nifti_bytes())(t), t / "o.txt",
                                                "--model", m], 65, "o.txt"),
    ("cli: negative threads", lambda t, m: ["segment", write("ct.nii", nifti_bytes())(t), t / "o.nii.gz", "--model", m,
                                            "--threads=-1"], 64, "--threads must be 0"),
    ("cli: NaN voxel", lambda t, m: ["segment", write("ct.nii", nifti_bytes(np.nan))(t), t / "o.nii.gz", "--model", m],
     65, "nan"),
]


def nifti_bytes(value=0.0):
    import nibabel as nib
    data = np.full((12, 12, 8), value, np.float32)
    return nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_bytes()


@pytest.mark.parametrize("name,args,code,message", CLI, ids=[r[0] for r in CLI])
def test_cli(tmp_path, small_model_path, name, args, code, message):
    result = run_cli(*args(tmp_path, small_model_path))
    assert result.returncode == code and message in result.stderr, (name, result.returncode, result.stderr)
    if code != 64:  # usage errors come with the usage text
        # One line names the error; plausibility warnings (never errors) may precede it.
        lines = result.stderr.splitlines()
        assert lines and lines[-1].startswith("liverseg: ") and not lines[-1].startswith("liverseg: warning: "), result.stderr
        assert all(line.startswith("liverseg: warning: ") for line in lines[:-1]), result.stderr
    assert not (tmp_path / "o.nii.gz").exists()

