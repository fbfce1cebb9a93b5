"""C and C++ programs built against the *installed* library (pkg-config and CMake) segment
a real CT and agree with the Python binding; the installed library has the promised shape."""
import ctypes
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from liverseg import _lib

CONSUMERS = ROOT / "Tests" / "consumers"


def header_version():
    """MAJOR.MINOR.PATCH from the header, the one place the version is written."""
    text = (ROOT / "include" / "liverseg.h").read_text()
    return ".".join(re.search(rf"#define LIVERSEG_VERSION_{part} (\d+)", text).group(1) for part in ("MAJOR", "MINOR", "PATCH"))


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    run(["make", "-C", str(ROOT), "install", f"PREFIX={prefix}"])
    return prefix


@pytest.fixture(scope="module")
def env(prefix):
    return dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))


def test_installed_layout(prefix):
    lib = prefix / "lib"
    version = header_version()
    assert (lib / f"libliverseg.so.{version}").is_file()
    assert os.readlink(lib / "libliverseg.so.0") == f"libliverseg.so.{version}"
    assert os.readlink(lib / "libliverseg.so") == "libliverseg.so.0"
    assert (prefix / "include" / "liverseg.h").is_file() and (prefix / "include" / "liverseg.hpp").is_file()
    assert (prefix / "bin" / "liverseg").is_file()
    assert (prefix / "share" / "liverseg" / "liver-default.safetensors").read_bytes() == \
        (ROOT / "models" / "liver-default.safetensors").read_bytes()
    pc = (lib / "pkgconfig" / "liverseg.pc").read_text()
    assert f"prefix={prefix}" in pc and f"Version: {version}" in pc
    # A dynamic link must not need openblas.pc or zlib.pc (only a static link needs them).
    assert not [line for line in pc.splitlines() if line.startswith("Requires")] and "Libs.private: -lopenblas -lz" in pc
    cmake = lib / "cmake" / "liverseg"
    assert (cmake / "liversegConfig.cmake").is_file() and f'"{version}"' in (cmake / "liversegConfigVersion.cmake").read_text()
    so = str(lib / f"libliverseg.so.{version}")
    assert "SONAME" in run(["readelf", "-d", so]) and "[libliverseg.so.0]" in run(["readelf", "-d", so])
    needed = re.findall(r"NEEDED.*\[(.*)\]", run(["readelf", "-d", so]))
    assert not [n for n in needed if "swift" in n or "Foundation" in n or "dispatch" in n], needed
    assert any("openblas" in n for n in needed)
    # Foundation, linked statically, would bring ICU's data with it (78 MB instead of 19 MB).
    statically_linked = run(["nm", so])
    assert "$s10Foundation" not in statically_linked and "$s20FoundationEssentials" not in statically_linked
    exported = [line.split()[-1] for line in run(["nm", "-D", "--defined-only", so]).splitlines()
                if re.search(r" [TDBR] ", line)]
    assert exported and all(name.startswith("liverseg_") for name in exported), exported
    declared = set(re.findall(r"\b(liverseg_[a-z0-9_]+)\s*\(", (ROOT / "include" / "liverseg.h").read_text()))
    assert {name.split("@")[0] for name in exported} == declared


@pytest.fixture(scope="module")
def programs(prefix, env, tmp_path_factory):
    """The C and C++ consumers, each built once with pkg-config and once with CMake."""
    out = tmp_path_factory.mktemp("consumers")
    flags = run(["pkg-config", "--cflags", "--libs", "liverseg"], env=env).split()
    rpath = f"-Wl,-rpath,{prefix / 'lib'}"
    built = {}
    built["c-pkgconfig"] = out / "c_pkg"
    run(["cc", "-std=c11", "-Wall", "-Werror", str(CONSUMERS / "segment_raw.c"), *flags, rpath, "-o", str(built["c-pkgconfig"])])
    # A program written for 0.1 and compiled against 0.1's header, linked to this library.
    built["c-abi-0.1"] = out / "c_abi_0_1"
    run(["cc", "-std=c11", "-Wall", "-Werror", "-I", str(CONSUMERS / "abi-0.1"), str(CONSUMERS / "segment_abi_0_1.c"),
         f"-L{prefix / 'lib'}", "-lliverseg", rpath, "-o", str(built["c-abi-0.1"])])
    built["cpp-pkgconfig"] = out / "cpp_pkg"
    run(["c++", "-std=c++17", "-Wall", "-Werror", str(CONSUMERS / "segment_raw.cpp"), *flags, rpath,
         "-o", str(built["cpp-pkgconfig"])])
    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed (the CI script installs it)")
    run(["cmake", "-S", str(CONSUMERS), "-B", str(out / "cmake"), "-DCMAKE_BUILD_TYPE=Release"], env=env)
    run(["cmake", "--build", str(out / "cmake")], env=env)
    built["c-cmake"] = out / "cmake" / "segment_raw_c"
    built["cpp-cmake"] = out / "cmake" / "segment_raw_cpp"
    # find_package(liverseg 0.2 CONFIG) through the installed CMake package, no pkg-config.
    clean = {k: v for k, v in env.items() if k != "PKG_CONFIG_PATH"}
    run(["cmake", "-S", str(CONSUMERS / "find-package"), "-B", str(out / "find-package"), "-DCMAKE_BUILD_TYPE=Release",
         f"-DCMAKE_PREFIX_PATH={prefix}"], env=clean)
    run(["cmake", "--build", str(out / "find-package")], env=clean)
    built["c-find-package"] = out / "find-package" / "segment_raw_c"
    built["cpp-find-package"] = out / "find-package" / "segment_raw_cpp"
    return built


def test_find_package_checks_the_version(prefix, tmp_path):
    """find_package(liverseg X.Y): same major and at least as new fits, a newer minor does not."""
    major, minor, _ = map(int, header_version().split("."))
    for asked, fits in [(f"{major}.{minor}", True), (f"{major}.0", True), (f"{major}.{minor + 1}", False), (f"{major + 1}.0", False)]:
        src = tmp_path / asked
        src.mkdir()
        (src / "CMakeLists.txt").write_text(f"cmake_minimum_required(VERSION 3.16)\nproject(v NONE)\n"
                                            f"find_package(liverseg {asked} CONFIG REQUIRED)\n")
        result = subprocess.run(["cmake", "-S", str(src), "-B", str(src / "b"), f"-DCMAKE_PREFIX_PATH={prefix}"],
                                capture_output=True, text=True)
        assert (result.returncode == 0) == fits, (asked, result.stderr)


def test_struct_layout_matches_python_binding(programs):
    text = subprocess.run([str(programs["c-pkgconfig"])], capture_output=True, text=True).stdout
    layout = {m[0]: list(map(int, m[1].split())) for m in re.findall(r"layout (\w+) ([\d ]+)", text)}
    V, P, I = _lib.Volume, _lib.SegmentParams, _lib.ModelInfo
    assert layout["volume"] == [ctypes.sizeof(V), V.dtype.offset, V.dims.offset, V.spacing.offset, V.ijk_to_ras.offset]
    assert layout["params"] == [ctypes.sizeof(P), P.max_tile_voxels.offset, P.threshold.offset, P.crf.offset,
                                P.crf_params.offset, P.progress.offset, P.progress_user_data.offset, P.postprocess.offset]
    assert layout["info"] == [ctypes.sizeof(I), I.spacing.offset, I.orientation.offset, I.n_parameters.offset]


def test_consumers_match_python(programs, small_model, small_model_path, ircadb01, tmp_path):
    ct, affine, _ = ircadb01
    expected = small_model.segment(ct, affine=affine)
    assert 0 < expected.sum() < expected.size
    raw = tmp_path / "ct.raw"
    np.asfortranarray(ct).ravel(order="F").astype("<i2").tofile(raw)
    matrix = tmp_path / "m.bin"
    np.ascontiguousarray(affine, dtype="<f8").tofile(matrix)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    for name, program in programs.items():
        mask_path = tmp_path / f"{name}.raw"
        out = run([str(program), str(small_model_path), str(raw), *map(str, ct.shape), *(repr(float(s)) for s in spacing),
                   str(matrix), str(mask_path)])
        assert "ok" in out, name
        mask = np.fromfile(mask_path, np.uint8).reshape(ct.shape, order="F")
        assert np.array_equal(mask, expected), name


def test_readme_c_program_runs_verbatim(prefix, env, tmp_path):
    """The README's complete C program, built as the README says (pkg-config + rpath),
    segments a real CT as the Python binding does."""
    import liverseg
    from conftest import require_data
    readme = (ROOT / "README.md").read_text()
    program = next(block for block in re.findall(r"```c\n(.*?)```", readme, re.S) if "liverseg_image_read" in block)
    (tmp_path / "segment.c").write_text(program)
    flags = run(["pkg-config", "--cflags", "--libs", "liverseg"], env=env).split()
    run(["cc", str(tmp_path / "segment.c"), "-o", str(tmp_path / "segment"), *flags, f"-Wl,-rpath,{prefix / 'lib'}",
         "-Wall", "-Wextra", "-Werror"], env=env)
    ct = require_data("totalseg-example/ct-3mm.nii.gz")
    model = prefix / "share" / "liverseg" / "liver-default.safetensors"
    out = run([str(tmp_path / "segment"), str(model), str(ct), str(tmp_path / "liver.nii.gz")])
    image, geometry = liverseg.read_image(ct)
    expected = liverseg.Model(model).segment(image, affine=geometry.affine)
    assert out == f"{expected.sum()} liver voxels\n"
    mask, mask_geometry = liverseg.read_image(tmp_path / "liver.nii.gz")
    assert np.array_equal(mask, expected) and mask_geometry == geometry
