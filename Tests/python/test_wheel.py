"""The wheel `make wheel` builds, installed into a fresh virtual environment (without this
checkout, its build folder or the machine's Python packages: numpy comes from PyPI or
pip's cache), segments a real CT through the package and through the `liverseg` console
script, on the OpenBLAS it bundles, exactly as the library built here does."""
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import liverseg
from conftest import ROOT, require_data
from test_consumers import header_version

# Variables that would point the installed package back at this checkout.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "LIVERSEG_LIBRARY", "LIVERSEG_CLI", "LIVERSEG_MODEL", "LD_LIBRARY_PATH", "VIRTUAL_ENV")}


def run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=CLEAN_ENV, timeout=900, **kw)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel path, virtual environment folder) with the wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(["make", "-C", ROOT, "wheel", f"WHEEL_DIR={tmp / 'dist'}"])
    wheels = list((tmp / "dist").glob("liverseg-*.whl"))
    assert len(wheels) == 1, wheels
    run([sys.executable, "-m", "venv", tmp / "venv"])
    run([tmp / "venv" / "bin" / "python", "-m", "pip", "install", "-q", wheels[0]], cwd=tmp)
    return wheels[0], tmp / "venv"


def test_wheel_holds_the_native_parts_and_our_model_only(installed):
    wheel, _ = installed
    assert re.fullmatch(rf"liverseg-{re.escape(header_version())}-py3-none-linux_x86_64\.whl", wheel.name)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("liverseg/models/liver-default.safetensors") == (ROOT / "models" / "liver-default.safetensors").read_bytes()
        assert z.getinfo("liverseg/bin/liverseg").external_attr >> 16 & 0o111
    assert {"liverseg/libliverseg.so", "liverseg/bin/liverseg", "liverseg/py.typed", "liverseg/__main__.py",
            "liverseg/libopenblas.so.0", "liverseg/libgfortran.so.5"} <= names
    # No patient data, no other model: only code, our model and shared libraries.
    data = [n for n in names if not re.search(r"(\.py|\.so(\.\d+)*|py\.typed|/bin/liverseg|\.dist-info/.*)$", n)]
    assert data == ["liverseg/models/liver-default.safetensors"]


SEGMENT = """
import json, sys, liverseg
model = liverseg.Model()
ct, geometry = liverseg.read_image(sys.argv[1])
mask = model.segment(ct, affine=geometry.affine, threads=2)
liverseg.write_image(sys.argv[2], mask, geometry)
maps = open("/proc/self/maps").read()
print(json.dumps({"package": liverseg.__file__, "model": model.path, "version": liverseg.version(),
                  "voxels": int(mask.sum()), "openblas": sorted({l.split()[-1] for l in maps.splitlines() if "openblas" in l})}))
"""


def test_installed_package_and_console_script_segment_a_real_ct(installed, tmp_path):
    _, venv = installed
    ct = require_data("totalseg-example/ct-3mm.nii.gz")
    report = json.loads(run([venv / "bin" / "python", "-c", SEGMENT, ct, tmp_path / "py.nii.gz"], cwd=tmp_path))
    package = os.path.dirname(report["package"])
    assert package.startswith(str(venv)) and report["model"].startswith(package) and report["version"] == header_version()
    # Ours, not the system's (numpy's own libscipy_openblas64_ is another library).
    ours = [path for path in report["openblas"] if os.path.basename(path).startswith("libopenblas")]
    assert ours == [os.path.join(package, "libopenblas.so.0")], report["openblas"]
    # The same mask as the library built in this checkout.
    image, geometry = liverseg.read_image(ct)
    expected = liverseg.Model(ROOT / "models" / "liver-default.safetensors").segment(image, affine=geometry.affine)
    assert report["voxels"] == int(expected.sum()) > 10000
    assert np.array_equal(liverseg.read_image(tmp_path / "py.nii.gz")[0], expected)

    script = venv / "bin" / "liverseg"
    assert run([script, "--version"]).strip() == header_version()
    assert run([venv / "bin" / "python", "-m", "liverseg", "--version"]).strip() == header_version()
    out = run([script, "segment", ct, tmp_path / "cli.nii.gz", "--threads", "2"], cwd=tmp_path)
    assert f"{expected.sum()} liver voxels" in out
    assert np.array_equal(liverseg.read_image(tmp_path / "cli.nii.gz")[0], expected)
    # The program and the library load the bundled OpenBLAS and its Fortran runtime.
    for binary in (os.path.join(package, "bin", "liverseg"), os.path.join(package, "libliverseg.so")):
        resolved = dict(re.findall(r"(\S+) => (\S+)", run(["ldd", binary])))
        for soname in ("libopenblas.so.0", "libgfortran.so.5", "libquadmath.so.0"):
            assert os.path.realpath(resolved[soname]) == os.path.join(package, soname), (binary, resolved)
