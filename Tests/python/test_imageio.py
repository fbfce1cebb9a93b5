"""Image files through liverseg's Swift readers and writers, checked against nibabel
(NIfTI), pynrrd (NRRD) and SimpleITK (all three formats), on synthetic images of every
dtype and on every real file in ../shared/data."""
import ctypes
import gzip
import os
import zlib

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

import liverseg
from conftest import DATA, require_data

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64, np.float32, np.float64]
EXTENSIONS = ["nii", "nii.gz", "nrrd", "nhdr", "mha", "mhd"]
LPS = np.diag([-1.0, -1.0, 1.0])

# Oblique, anisotropic, shifted; every entry exactly representable in float32 so that
# NIfTI's float32 sform round-trips it exactly.
_c, _s = np.float32(np.cos(0.3)), np.float32(np.sin(0.3))
OBLIQUE = np.array([[_c * 0.75, -_s * 0.5, 0, -12.25],
                    [_s * 0.75, _c * 0.5, 0, 40.5],
                    [0, 0, -2.5, 101.125],
                    [0, 0, 0, 1]], dtype=np.float32).astype(np.float64)


def sample(dtype, shape=(7, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        a = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    else:
        a = (rng.standard_normal(shape) * 1000).astype(dtype)
    return np.asfortranarray(a)


def sitk_affine(image):
    return liverseg.affine_from_sitk(image)


def pynrrd_affine(header):
    """IJK->RAS from a pynrrd header in LPS space."""
    assert header["space"] == "left-posterior-superior"
    affine = np.eye(4)
    affine[:3, :3] = LPS @ np.asarray(header["space directions"], dtype=np.float64).T
    affine[:3, 3] = LPS @ np.asarray(header["space origin"], dtype=np.float64)
    return affine


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("ext", EXTENSIONS)
def test_round_trip_and_other_readers(tmp_path, dtype, ext):
    array = sample(dtype)
    path = tmp_path / f"image.{ext}"
    liverseg.write_image(path, array, OBLIQUE)
    back, geometry = liverseg.read_image(path)
    assert back.dtype == array.dtype and np.array_equal(back, array)
    if ext in ("mha", "mhd"):  # MetaImage stores direction cosines and spacing apart
        np.testing.assert_allclose(geometry.affine, OBLIQUE, rtol=0, atol=1e-12)
    else:
        assert np.array_equal(geometry.affine, OBLIQUE)

    # SimpleITK reads every format liverseg writes.
    image = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(image).T, array)
    np.testing.assert_allclose(sitk_affine(image), OBLIQUE, rtol=0, atol=1e-6)

    if ext.startswith("nii"):
        img = nib.load(path)
        assert img.get_data_dtype() == array.dtype
        assert np.array_equal(np.asarray(img.dataobj), array)
        assert np.array_equal(img.affine, OBLIQUE)
        assert img.header.get_sform(coded=True)[1] == 1
        np.testing.assert_allclose(img.header.get_qform(), OBLIQUE, atol=1e-5)
    if ext in ("nrrd", "nhdr"):
        data, header = nrrd.read(str(path))
        assert np.array_equal(data, array)
        assert np.array_equal(pynrrd_affine(header), OBLIQUE)


@pytest.mark.parametrize("name", sorted(p.relative_to(DATA).as_posix() for p in DATA.glob("*/*.nii.gz")))
def test_every_real_file_matches_nibabel(name):
    path = require_data(name)
    array, geometry = liverseg.read_image(path, scaled=False)
    img = nib.load(path)
    assert array.shape == img.shape
    assert array.dtype == img.get_data_dtype()
    assert np.array_equal(array, img.dataobj.get_unscaled())
    assert np.array_equal(geometry.affine, img.affine)
    intensities, plain = liverseg.read_image(path)   # the default: scaling applied, as nibabel's dataobj
    assert np.array_equal(intensities, np.asanyarray(img.dataobj))
    assert np.array_equal(plain.affine, img.affine)
    np.testing.assert_allclose(geometry.spacing, img.header.get_zooms(), rtol=1e-6)


def test_int32_ct_and_float64_mask_of_the_external_set():
    ct, g = liverseg.read_image(require_data("totalseg-example/ct-3mm.nii.gz"))
    mask, gm = liverseg.read_image(require_data("totalseg-example/liver-3mm.nii.gz"))
    assert ct.dtype == np.int32 and (ct.min(), ct.max()) == (-1207, 3382)
    assert mask.dtype == np.float64 and int(mask.sum()) == 41602
    assert np.array_equal(g.affine, gm.affine) and np.allclose(g.spacing, 3)


def test_mask_written_on_a_real_ct_grid_overlays_in_every_reader(tmp_path):
    ct_path = require_data("totalseg-example/ct-20slices.nii.gz")
    ct, geometry = liverseg.read_image(ct_path)
    mask = (ct > 100).astype(np.uint8)
    reference = nib.load(ct_path)
    for ext in EXTENSIONS:
        out = tmp_path / f"mask.{ext}"
        liverseg.write_image(out, mask, geometry)
        image = sitk.ReadImage(str(out))
        np.testing.assert_allclose(sitk_affine(image), reference.affine, atol=1e-9)
        assert np.array_equal(sitk.GetArrayFromImage(image).T, mask)
    assert np.array_equal(nib.load(tmp_path / "mask.nii.gz").affine, reference.affine)


def nifti_with(tmp_path, name, array, configure, endianness="<"):
    """Writes a NIfTI file with nibabel after configure(header) and returns its path."""
    header = nib.Nifti1Header(endianness=endianness)
    header.set_data_dtype(array.dtype)
    header.set_data_shape(array.shape)
    configure(header)
    header["vox_offset"] = 352
    path = tmp_path / name
    with open(path, "wb") as f:
        f.write(header.binaryblock)
        f.write(b"\0" * 4)
        f.write(np.asarray(array, dtype=header.get_data_dtype()).tobytes(order="F"))
    return path


def _both(header, affine, qcode, scode):
    header.set_qform(affine, code=qcode)
    header.set_sform(affine, code=scode)


@pytest.mark.parametrize("case", ["qform-only", "sform-only", "sform-preferred", "neither", "negative-pixdim", "big-endian"])
def test_nifti_header_variants_match_nibabel(tmp_path, case):
    array = sample(np.int16, seed=3)
    other = OBLIQUE.copy()
    other[:3, 3] += 7  # a qform that must lose against the sform

    def configure(h):
        if case == "qform-only":
            _both(h, OBLIQUE, 1, 0)
        elif case == "sform-only":
            _both(h, OBLIQUE, 0, 2)
        elif case == "sform-preferred":
            h.set_qform(other, code=1)
            h.set_sform(OBLIQUE, code=1)
        elif case == "neither":
            h.set_zooms((0.7, 0.8, 2.5))
            _both(h, np.eye(4), 0, 0)
        elif case == "negative-pixdim":
            _both(h, OBLIQUE, 1, 0)
            h["pixdim"][1] = -h["pixdim"][1]
        else:
            _both(h, OBLIQUE, 1, 1)

    path = nifti_with(tmp_path, f"{case}.nii", array, configure, endianness=">" if case == "big-endian" else "<")
    back, geometry = liverseg.read_image(path)
    img = nib.load(path)
    assert np.array_equal(back, np.asarray(img.dataobj))
    np.testing.assert_allclose(geometry.affine, img.affine, rtol=0, atol=1e-6)
    if case in ("sform-only", "sform-preferred", "big-endian"):
        assert np.array_equal(geometry.affine, OBLIQUE)


def test_nifti_scaling_matches_nibabel(tmp_path):
    raw = sample(np.int16, seed=4)

    def configure(h):
        _both(h, OBLIQUE, 1, 1)
        h["scl_slope"], h["scl_inter"] = 0.5, -1024

    path = nifti_with(tmp_path, "scaled.nii", raw, configure)
    stored, geometry = liverseg.read_image(path, scaled=False)
    assert np.array_equal(stored, raw) and (geometry.scl_slope, geometry.scl_inter) == (0.5, -1024)
    scaled, plain = liverseg.read_image(path)   # the default: intensities
    assert scaled.dtype == np.float64 and np.array_equal(scaled, nib.load(path).get_fdata())
    assert (plain.scl_slope, plain.scl_inter) == (1, 0)
    assert plain == liverseg.Geometry(OBLIQUE) and plain != geometry
    out = tmp_path / "again.nii.gz"
    liverseg.write_image(out, stored, geometry)
    assert np.array_equal(nib.load(out).get_fdata(), scaled)


def test_pynrrd_variants_detached_gzip_big_endian(tmp_path):
    array = sample(np.int16, seed=5)
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.5, 0.6, 2.0]),
              "space origin": np.array([1.0, 2.0, 3.0]), "endian": "big", "encoding": "gzip"}
    expected = np.diag([-0.5, -0.6, 2.0, 1.0])
    expected[:3, 3] = [-1, -2, 3]
    for name, detached in [("attached.nrrd", False), ("detached.nhdr", True)]:
        nrrd.write(str(tmp_path / name), array, dict(header), detached_header=detached)
        back, geometry = liverseg.read_image(tmp_path / name)
        assert np.array_equal(back, array)
        assert np.array_equal(geometry.affine, expected)


def test_simpleitk_metaimage_variants(tmp_path):
    array = sample(np.uint8, seed=6)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T))
    image.SetSpacing((0.7, 0.8, 1.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    for name, compress in [("a.mha", True), ("b.mhd", False), ("c.mhd", True), ("d.nrrd", True), ("e.nii.gz", True)]:
        sitk.WriteImage(image, str(tmp_path / name), compress)
        back, geometry = liverseg.read_image(tmp_path / name)
        assert np.array_equal(back, array), name
        np.testing.assert_allclose(geometry.affine, sitk_affine(image), atol=1e-6, err_msg=name)


def test_malformed_and_truncated_files_fail_cleanly(tmp_path):
    good = tmp_path / "good.nii"
    liverseg.write_image(good, sample(np.int16), OBLIQUE)
    data = good.read_bytes()
    cases = {
        "short.nii": (data[:100], "348-byte header"),
        "cut.nii": (data[:-5], "truncated"),
        "dims.nii": (data[:40] + b"\x09\x00" + data[42:], "dim[0]"),
        "type.nii": (data[:70] + b"\x80\x00" + data[72:], "datatype 128"),
        "cut.nii.gz": (gzip.compress(data)[:-30], "truncated"),
        "bad.nrrd": (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2\nencoding: raw\n\n", "sizes"),
        "enc.nrrd": (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nendian: little\nencoding: bzip2\n\n", "encoding"),
        "bad.mha": (b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\n", "ElementDataFile"),
        "type.mha": (b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_FLOAT_MATRIX\nElementDataFile = LOCAL\n", "ElementType"),
    }
    for name, (content, field) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(liverseg.Error) as e:
            liverseg.read_image(tmp_path / name)
        assert field in str(e.value), (name, str(e.value))
        assert name in str(e.value)
    with pytest.raises(liverseg.Error) as e:
        liverseg.read_image(tmp_path / "missing.nii.gz")
    assert e.value.status == 2  # LIVERSEG_IO_ERROR


def test_detached_data_file_missing_is_an_io_error(tmp_path):
    liverseg.write_image(tmp_path / "x.mhd", sample(np.uint8), OBLIQUE)
    (tmp_path / "x.raw").unlink()
    with pytest.raises(liverseg.Error) as e:
        liverseg.read_image(tmp_path / "x.mhd")
    assert e.value.status == 2 and "x.raw" in str(e.value)


def test_writes_are_atomic(tmp_path):
    out = tmp_path / "mask.nii.gz"
    liverseg.write_image(out, sample(np.uint8), OBLIQUE)
    before = out.read_bytes()
    singular = OBLIQUE.copy()
    singular[:, 0] = 0
    with pytest.raises(liverseg.Error):
        liverseg.write_image(out, sample(np.uint8, seed=9), singular)
    assert out.read_bytes() == before
    with pytest.raises(liverseg.Error) as e:
        liverseg.write_image(tmp_path / "no" / "such" / "folder.nii", sample(np.uint8), OBLIQUE)
    assert e.value.status == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]


def zeros_stream(wbits, prefix=b"", gib=1):
    """`prefix` then `gib` GiB of zeros as one gzip (wbits 31) or zlib (15) stream: ~4 MB."""
    c = zlib.compressobj(1, zlib.DEFLATED, wbits)
    chunk = bytes(1 << 24)
    parts = [c.compress(prefix)] + [c.compress(chunk) for _ in range(64 * gib)]
    return b"".join(parts) + c.flush()


def read_in_subprocess(path, timeout=60):
    """liverseg.read_image(path) in a child process with 4 GiB of address space and a
    timeout, so that a hang or a runaway allocation fails the test instead of the machine.
    Returns (exit code, the liverseg.Error message or "read")."""
    import resource
    import subprocess
    import sys
    code = ("import sys, liverseg\ntry:\n    liverseg.read_image(sys.argv[1]); print('read')\n"
            "except liverseg.Error as e:\n    print(f'{e.status} {e}')")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=limit)
    return result.returncode, result.stdout.strip() + result.stderr.strip()[-300:]


def test_decompression_bombs_are_refused(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape((2, 2, 2))
    header["vox_offset"] = 352
    nifti_prefix = header.binaryblock + b"\0" * 4
    files = {
        # 360 bytes described, 1 GiB inside.
        "bomb.nii.gz": (zeros_stream(31, nifti_prefix), "more than the 360 bytes its header describes"),
        "bomb.nrrd": (b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: gzip\n\n" + zeros_stream(31),
                      "more than the 8 bytes its header describes"),
        "bomb.mha": (b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nCompressedData = True\n"
                     b"ElementDataFile = LOCAL\n" + zeros_stream(15), "more than the 8 bytes its header describes"),
    }
    for name, (content, message) in files.items():
        assert len(content) < 8 << 20
        (tmp_path / name).write_bytes(content)
        with pytest.raises(liverseg.Error) as e:
            liverseg.read_image(tmp_path / name)
        assert e.value.status == 1 and message in str(e.value) and name in str(e.value), str(e.value)
    # The header's size itself is allowed: exactly 8 bytes inflate fine.
    exact = nifti_prefix + bytes(range(8))
    (tmp_path / "exact.nii.gz").write_bytes(gzip.compress(exact))
    assert np.array_equal(liverseg.read_image(tmp_path / "exact.nii.gz")[0].ravel(order="F"), np.arange(8))


def test_fifo_and_device_files_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.nii.gz")
    (tmp_path / "zero.nhdr").write_text("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n"
                                        "data file: /dev/zero\n")
    (tmp_path / "zero.mhd").write_text("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = /dev/zero\n")
    for name, culprit in [("pipe.nii.gz", "pipe.nii.gz"), ("zero.nhdr", "/dev/zero"), ("zero.mhd", "/dev/zero")]:
        code, output = read_in_subprocess(tmp_path / name)
        assert code == 0 and output.startswith("2 ") and "not a regular file" in output and culprit in output, output


def test_nifti_refuses_extents_beyond_int16(tmp_path):
    wide = np.ones((40000, 1, 1), np.uint8)
    for ext in ("nii", "nii.gz"):
        with pytest.raises(liverseg.Error, match="32767") as e:
            liverseg.write_image(tmp_path / f"wide.{ext}", wide, np.eye(4))
        assert e.value.status == 4  # LIVERSEG_UNSUPPORTED
    liverseg.write_image(tmp_path / "wide.nrrd", wide, np.eye(4))
    assert np.array_equal(liverseg.read_image(tmp_path / "wide.nrrd")[0], wide)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.nrrd"]


def test_image_info_dtype_is_the_volume_dtype(tmp_path, small_model):
    """liverseg_image_info.dtype is a liverseg_dtype: a read uint16 image is segmented by
    passing its dtype on, and 0.1's struct_size still gets 0.1's voxel type codes."""
    from liverseg import _lib
    from liverseg._lib import lib
    from liverseg.imageio import ImageInfo
    array = np.asfortranarray(np.random.default_rng(2).integers(0, 300, (12, 10, 8)).astype(np.uint16))
    liverseg.write_image(tmp_path / "ct.nii", array, np.diag([4.0, 4.0, 4.0, 1.0]))
    info = ImageInfo()
    info.struct_size = ctypes.sizeof(ImageInfo)
    data = ctypes.c_void_p()
    assert lib.liverseg_image_read(str(tmp_path / "ct.nii").encode(), ctypes.byref(info), ctypes.byref(data)) == 0
    try:
        assert info.dtype == _lib.DTYPE_UINT16 and info.voxel_type_0_1 == 3
        volume = _lib.Volume()
        volume.data, volume.dtype = data.value, info.dtype
        volume.dims[:], volume.spacing[:] = list(info.dims), list(info.spacing)
        probability = np.empty(array.shape, np.float32, order="F")
        mask = np.empty(array.shape, np.uint8, order="F")
        assert lib.liverseg_segment(small_model._handle, ctypes.byref(volume), None, mask.ctypes.data,
                                    probability.ctypes.data) == 0, lib.liverseg_last_error()
    finally:
        lib.liverseg_free(data)
    expected = small_model.segment(array.astype(np.float32), spacing=(4, 4, 4), return_probability=True)[1]
    assert np.array_equal(probability, expected)

    # A program built against 0.1: the struct ends before dtype, the codes are 0.1's.
    old_size = ImageInfo.dtype.offset
    old = ImageInfo()
    old.struct_size, old.dtype = old_size, 12345  # beyond the 0.1 struct: must stay untouched
    assert lib.liverseg_image_read(str(tmp_path / "ct.nii").encode(), ctypes.byref(old), ctypes.byref(data)) == 0
    try:
        assert old.voxel_type_0_1 == 3 and old.dtype == 12345 and old.struct_size == old_size
        assert lib.liverseg_image_write(str(tmp_path / "again.nrrd").encode(), data, ctypes.byref(old)) == 0
    finally:
        lib.liverseg_free(data)
    back, _ = liverseg.read_image(tmp_path / "again.nrrd")
    assert back.dtype == np.uint16 and np.array_equal(back, array)
