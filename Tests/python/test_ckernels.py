"""The C kernels of the FFT convolution and the CRF lattice (Sources/CKernels) in each version the library may
pick at load time — AVX-512, AVX2+FMA, baseline x86-64, whichever this CPU can run — built
one at a time with the toolchain's clang and checked against numpy in float64. The library
itself runs only the version for the machine's CPU, so without this a machine with AVX-512
would never test the AVX2 and baseline code."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

SOURCE = ROOT / "Sources" / "CKernels" / "kernels.c"


def clang():
    swift = shutil.which("swift")
    candidate = Path(swift).resolve().parent / "clang" if swift else None
    return str(candidate) if candidate and candidate.exists() else shutil.which("clang")


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


# Each -march and the CPU flags it needs (x86-64-v3: AVX2, FMA; v4: AVX-512 F/BW/CD/DQ/VL).
TARGETS = {"x86-64": set(), "x86-64-v3": {"avx2", "fma", "bmi2"},
           "x86-64-v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}}


@pytest.fixture(scope="module", params=list(TARGETS))
def kernels(request, tmp_path_factory):
    march = request.param
    if not TARGETS[march] <= cpu_flags():
        pytest.skip(f"this CPU cannot run {march}")   # not a hidden failure: the CPU lacks the instructions
    return build_kernels(march, tmp_path_factory)


@pytest.fixture(scope="module")
def baseline_kernels(tmp_path_factory):
    """The baseline x86-64 version, which every CPU can run: the others must agree with it
    where the header promises the same result on every CPU."""
    return build_kernels("x86-64", tmp_path_factory)


def build_kernels(march, tmp_path_factory):
    compiler = clang()
    assert compiler, "no clang found beside swift"
    out = tmp_path_factory.mktemp(march) / "libckernels.so"
    subprocess.run([compiler, "-O3", f"-march={march}", "-DCKERNELS_SINGLE_TARGET", "-shared", "-fPIC",
                    "-I", str(SOURCE.parent / "include"), str(SOURCE), "-o", str(out)], check=True)
    lib = ctypes.CDLL(str(out))
    for suffix, scalar in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        p, n = ctypes.POINTER(scalar), ctypes.c_ssize_t
        getattr(lib, f"ckernels_spectral_mix_{suffix}").argtypes = [p, n, p, n, p, n, n, n, n, n, n,
                                                                     ctypes.c_int, ctypes.c_int]
        getattr(lib, f"ckernels_radix2_{suffix}").argtypes = [p, n, n, n, n, p, p, ctypes.c_int]
        getattr(lib, f"ckernels_deconv_row_{suffix}").argtypes = [p, ctypes.POINTER(p), p, n, n, scalar, ctypes.c_int]
    lib.ckernels_lattice_embed.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_ssize_t,
                                           ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                                           ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32),
                                           ctypes.POINTER(ctypes.c_float)]
    lib.ckernels_lattice_embed.restype = None
    return lib


def pointer(array):
    ctype = ctypes.c_float if array.dtype == np.float32 else ctypes.c_double
    return array.ctypes.data_as(ctypes.POINTER(ctype))


@pytest.mark.parametrize("dtype,suffix,tolerance", [(np.float32, "f32", 1e-5), (np.float64, "f64", 1e-13)])
@pytest.mark.parametrize("conjugate", [0, 1])
@pytest.mark.parametrize("accumulate", [0, 1])
def test_spectral_mix_matches_numpy(kernels, dtype, suffix, tolerance, conjugate, accumulate):
    rng = np.random.default_rng(7)
    # 6 members: one register tile of 4 and 2 single members; 37 frequencies: vector loops
    # and a scalar tail for every vector width. Split layout: real parts, then imaginary
    # parts `stride` later, as in the FFT convolution.
    members, sources, count, stride = 6, 5, 37, 41
    k = rng.standard_normal((sources, 2, stride)).astype(dtype)
    x = rng.standard_normal((members, sources, 2, stride)).astype(dtype)
    y = rng.standard_normal((members, 2, stride)).astype(dtype)
    kc = k[:, 0, :count].astype(np.float64) + 1j * k[:, 1, :count]
    xc = x[:, :, 0, :count].astype(np.float64) + 1j * x[:, :, 1, :count]
    expected = ((np.conj(kc) if conjugate else kc)[None] * xc).sum(axis=1)
    if accumulate:
        expected += y[:, 0, :count] + 1j * y[:, 1, :count]
    getattr(kernels, f"ckernels_spectral_mix_{suffix}")(
        pointer(y), 2 * stride, pointer(k), 2 * stride, pointer(x), sources * 2 * stride, 2 * stride,
        members, sources, count, stride, conjugate, accumulate)
    got = y[:, 0, :count] + 1j * y[:, 1, :count].astype(np.float64)
    assert np.max(np.abs(got - expected)) < tolerance * np.max(np.abs(expected))


def run_spectral_mix(lib, suffix, y, k, x, members, sources, count, stride, conjugate, accumulate):
    """k [sources, 2, stride], x [members, sources, 2, stride], y [members, 2, stride]; x may
    be a view whose sources lie further apart (its strides give the layout)."""
    item = x.itemsize
    getattr(lib, f"ckernels_spectral_mix_{suffix}")(
        pointer(y), 2 * stride, pointer(k), k.strides[0] // item, pointer(x), x.strides[0] // item,
        x.strides[1] // item, members, sources, count, stride, conjugate, accumulate)


@pytest.mark.parametrize("dtype,suffix", [(np.float32, "f32"), (np.float64, "f64")])
@pytest.mark.parametrize("conjugate", [0, 1])
def test_spectral_mix_accumulates_one_source_at_a_time(kernels, baseline_kernels, dtype, suffix, conjugate):
    """Accumulating, one call over S sources gives the bits of S calls over one source each
    (so the weight gradient does not depend on how many blocks share a pass), on every CPU
    version; and the baseline build equals a numpy reference that adds each source's
    product, rounded as it goes, to y in turn."""
    rng = np.random.default_rng(11)
    members, sources, count, stride = 6, 5, 37, 41
    k = rng.standard_normal((sources, 2, stride)).astype(dtype)
    x = rng.standard_normal((members, sources, 2, stride)).astype(dtype)
    y0 = rng.standard_normal((members, 2, stride)).astype(dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    for lib in (kernels, baseline_kernels):
        together, one_by_one = y0.copy(), y0.copy()
        run_spectral_mix(lib, suffix, together, k, x, members, sources, count, stride, conjugate, 1)
        for s in range(sources):
            run_spectral_mix(lib, suffix, one_by_one, k[s:s + 1], x[:, s:s + 1], members, 1, count, stride,
                             conjugate, 1)
        assert np.array_equal(together.view(bits), one_by_one.view(bits))
    expected = y0.copy()
    sign = dtype(-1 if conjugate else 1)
    for s in range(sources):
        kr, ki = k[s, 0, :count], k[s, 1, :count] * sign
        xr, xi = x[:, s, 0, :count], x[:, s, 1, :count]
        expected[:, 0, :count] += kr * xr - ki * xi
        expected[:, 1, :count] += kr * xi + ki * xr
    got = y0.copy()
    run_spectral_mix(baseline_kernels, suffix, got, k, x, members, sources, count, stride, conjugate, 1)
    assert np.array_equal(got.view(bits), expected.view(bits))


def bit_reversed(n):
    bits = n.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)])


def split_rows(rng, dtype, n, length, stride):
    """n rows of `length` random complex values `stride` apart in the kernels' split layout
    (real parts, then imaginary parts n·stride later): (buffer, real view, imaginary view)."""
    data = np.zeros(2 * n * stride, dtype)
    re, im = data[: n * stride].reshape(n, stride), data[n * stride:].reshape(n, stride)
    re[:, :length] = rng.standard_normal((n, length))
    im[:, :length] = rng.standard_normal((n, length))
    return data, re, im


def twiddles(n, dtype):
    angles = 2 * np.pi * np.arange(n // 2) / n
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def run_radix2(lib, suffix, data, n, stride, length, cosines, sines, inverse):
    getattr(lib, f"ckernels_radix2_{suffix}")(pointer(data), n, stride, length, n * stride, pointer(cosines),
                                              pointer(sines), inverse)


# 1 to 64 elements: no stage, one, and odd and even stage counts (the kernel runs two stages
# per pass and one alone when their number is odd).
SIZES = [1, 2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize("dtype,suffix,tolerance", [(np.float32, "f32", 1e-5), (np.float64, "f64", 1e-13)])
@pytest.mark.parametrize("n", SIZES)
def test_radix2_is_the_dft_in_bit_reversed_order_and_inverts(kernels, dtype, suffix, tolerance, n):
    rng = np.random.default_rng(n)
    length, stride = 21, 23     # each element a vector of 21 complex values
    data, re, im = split_rows(rng, dtype, n, length, stride)
    original = re[:, :length] + 1j * im[:, :length].astype(np.float64)
    cosines, sines = twiddles(n, dtype)
    run_radix2(kernels, suffix, data, n, stride, length, cosines, sines, 0)
    expected = np.fft.fft(original, axis=0)[bit_reversed(n)]
    got = re[:, :length] + 1j * im[:, :length].astype(np.float64)
    assert np.max(np.abs(got - expected)) < tolerance * np.max(np.abs(expected))
    assert not re[:, length:].any() and not im[:, length:].any(), "wrote past a row's length"
    run_radix2(kernels, suffix, data, n, stride, length, cosines, sines, 1)
    back = re[:, :length] + 1j * im[:, :length].astype(np.float64)
    assert np.max(np.abs(back - n * original)) < tolerance * n * np.max(np.abs(original))


def radix2_stage_by_stage(re, im, cosines, sines, inverse):
    """The header's radix 2, one stage after another, in the arrays' own precision (numpy
    rounds every product and sum, as the baseline x86-64 code, which has no fused
    multiply-add, does)."""
    re, im = re.copy(), im.copy()
    n = re.shape[0]
    halves = [1 << k for k in range(n.bit_length() - 1)]
    for half in (halves if inverse else halves[::-1]):
        step = n // (2 * half)
        for group in range(0, n, 2 * half):
            for j in range(half):
                c, s = cosines[j * step], sines[j * step]
                a, b = group + j, group + j + half
                xr, xi, yr, yi = re[a].copy(), im[a].copy(), re[b].copy(), im[b].copy()
                if inverse:
                    tr, ti = yr * c - yi * s, yr * s + yi * c
                    re[a], im[a], re[b], im[b] = xr + tr, xi + ti, xr - tr, xi - ti
                else:
                    dr, di = xr - yr, xi - yi
                    re[a], im[a], re[b], im[b] = xr + yr, xi + yi, dr * c + di * s, di * c - dr * s
    return re, im


@pytest.mark.parametrize("dtype,suffix", [(np.float32, "f32"), (np.float64, "f64")])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("inverse", [0, 1])
def test_radix2_passes_give_the_bits_of_one_stage_at_a_time(baseline_kernels, dtype, suffix, n, inverse):
    """Two stages per pass over memory must not change any result: the baseline build equals
    the stage-by-stage reference bit for bit (the FMA builds round differently, by design)."""
    rng = np.random.default_rng(100 + n)
    length, stride = 37, 37
    data, re, im = split_rows(rng, dtype, n, length, stride)
    cosines, sines = twiddles(n, dtype)
    expected_re, expected_im = radix2_stage_by_stage(re, im, cosines, sines, inverse)
    run_radix2(baseline_kernels, suffix, data, n, stride, length, cosines, sines, inverse)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    assert np.array_equal(re.view(bits), expected_re.view(bits))
    assert np.array_equal(im.view(bits), expected_im.view(bits))


@pytest.mark.parametrize("dtype,suffix,tolerance", [(np.float32, "f32", 1e-5), (np.float64, "f64", 1e-13)])
@pytest.mark.parametrize("x", [1, 5, 8, 16, 17, 33, 37, 70, 160])
@pytest.mark.parametrize("relu", [0, 1])
def test_deconv_row_matches_numpy(kernels, dtype, suffix, tolerance, x, relu):
    """Short rows (one padded chunk), rows of whole and partial two- and one-vector chunks
    for both vector widths, and the last output summed on its own."""
    rng = np.random.default_rng(x)
    rows = 7
    # Each input row ends where the next one's data begins, as in a tensor: a read past x shows.
    data = rng.standard_normal((rows, x + 1)).astype(dtype)
    data[:, x] = 1e6
    taps = rng.standard_normal((rows, 3)).astype(dtype)
    bias = 0.25
    out = np.full(2 * x + 1, -7.0, dtype)
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    row_pointers = (ctypes.POINTER(ctype) * rows)(*[pointer(data[r]) for r in range(rows)])
    getattr(kernels, f"ckernels_deconv_row_{suffix}")(pointer(out), row_pointers, pointer(taps), rows, x, bias, relu)
    inputs = data[:, :x].astype(np.float64)
    following = np.concatenate([inputs[:, 1:], np.zeros((rows, 1))], axis=1)
    w = taps.astype(np.float64)
    expected = np.empty(2 * x)
    expected[0::2] = (w[:, 1:2] * inputs).sum(axis=0) + bias
    expected[1::2] = (w[:, 2:3] * inputs + w[:, 0:1] * following).sum(axis=0) + bias
    if relu:
        expected = np.maximum(expected, 0)
    assert np.max(np.abs(out[:2 * x] - expected)) < tolerance * np.max(np.abs(expected))
    assert out[2 * x] == -7.0, "wrote past the output row"


def lattice_embed(lib, features, scale, shift):
    """Runs ckernels_lattice_embed on `features` [n, d]; returns rem0, rank [n, d+1] and the
    weights [n, d+1]."""
    n, d = features.shape
    features = np.ascontiguousarray(features, np.float32)
    scale, shift = np.ascontiguousarray(scale, np.float64), np.ascontiguousarray(shift, np.float64)
    rem0, rank = np.full((n, d + 1), -99, np.int32), np.full((n, d + 1), -99, np.int32)
    weights = np.full((n, d + 1), np.nan, np.float32)
    lib.ckernels_lattice_embed(d, pointer(features), n, scale.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                               shift.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                               rem0.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                               rank.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), pointer(weights))
    return rem0, rank, weights


@pytest.mark.parametrize("d", range(1, 9))
def test_lattice_embed_finds_the_enclosing_simplex(kernels, baseline_kernels, d):
    """Checked by what defines the answer, not by the algorithm: the elevated point
    e = E·(f·scale − shift) (E the (d+1)×d elevation matrix of the header, built here as a
    matrix) must be the weighted sum of the d+1 simplex vertices the outputs name, with
    weights ≥ 0 summing to 1, and vertex k's coordinates must all be ≡ k (mod d+1) and sum
    to 0 (a point of the permutohedral lattice A*_d). Random features, and grid features
    with ties (positions in voxels, as the CRF gives). Every version must give the
    baseline's bits."""
    rng = np.random.default_rng(d)
    random = rng.normal(0, 20, (3000, d))
    grid = np.stack(np.meshgrid(*[np.arange(4)] * min(d, 3), indexing="ij"), -1).reshape(-1, min(d, 3)) * 1.5
    grid = np.concatenate([grid, np.full((len(grid), d - grid.shape[1]), 0.75)], axis=1)
    features = np.concatenate([random, grid]).astype(np.float32)
    scale = np.sqrt(2 / 3) * (d + 1) / np.sqrt((np.arange(d) + 1.0) * (np.arange(d) + 2))
    shift = features.min(axis=0).astype(np.float64) * scale
    rem0, rank, weights = lattice_embed(kernels, features, scale, shift)

    elevation = np.zeros((d + 1, d))
    elevation[0] = 1
    for j in range(1, d + 1):
        elevation[j, j:] = 1
        elevation[j, j - 1] = -j
    elevated = (features.astype(np.float64) * scale - shift) @ elevation.T
    assert (np.sort(rank, axis=1) == np.arange(d + 1)).all(), "ranks are not a permutation of 0...d"
    vertices = np.stack([rem0 + np.where(rank <= d - k, k, k - (d + 1)) for k in range(d + 1)], axis=1)
    assert (vertices.sum(axis=2) == 0).all()
    for k in range(d + 1):
        assert (np.mod(vertices[:, k], d + 1) == k).all(), f"vertex {k} is not a remainder-{k} lattice point"
    assert (weights >= -1e-6).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-5)
    rebuilt = np.einsum("nk,nkc->nc", weights.astype(np.float64), vertices)
    np.testing.assert_allclose(rebuilt, elevated, atol=2e-5 * (1 + np.abs(elevated).max()))

    expected = lattice_embed(baseline_kernels, features, scale, shift)
    for got, want in zip((rem0, rank, weights), expected):
        assert np.array_equal(got, want), "this CPU version differs from the baseline's bits"
