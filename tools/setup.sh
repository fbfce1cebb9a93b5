#!/usr/bin/env bash
# Installs what liverseg needs, skipping what is present.
#   tools/setup.sh demo   building the library and the CLI, and `make demo`: a Swift 6
#                         toolchain (not installed here) with OpenBLAS, zlib, pkg-config and
#                         GDCM (libgdcm-dev: the CLI reads DICOM series with it; it brings
#                         libgdcm3.0, CharLS and OpenJPEG; about 3 MB download, 16 MB installed)
#   tools/setup.sh test   (the default) also what the tests need: cmake, VTK's headers and
#                         libraries (the Slicer module example; without recommended packages:
#                         168 MB download, 0.8 GB installed, about 1 minute), and the Python
#                         references numpy, scipy, nibabel, safetensors, pytest, PyTorch's CPU
#                         build, pynrrd, SimpleITK, MedPy, and pydicom with pylibjpeg and its
#                         OpenJPEG plug-in (DICOM series, JPEG 2000), and Dask distributed
#                         (liverseg.batch)
set -euo pipefail
need=${1:-test}
case "$need" in
    demo|test) ;;
    *) echo "usage: tools/setup.sh [demo|test]" >&2; exit 64 ;;
esac
apt_packages=(libopenblas-dev zlib1g-dev pkg-config libgdcm-dev)
[ "$need" = test ] && apt_packages+=(liblapacke-dev libpng-dev cmake)
# Installed without their recommended packages (VTK's would add Qt, MPI and Java extras).
apt_lean_packages=()
[ "$need" = test ] && apt_lean_packages+=(libvtk9-dev)
missing=() lean_missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
for p in "${apt_lean_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || lean_missing+=("$p")
done
if [ $((${#missing[@]} + ${#lean_missing[@]})) -gt 0 ]; then
    echo "setup: installing ${missing[*]} ${lean_missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
    [ ${#lean_missing[@]} -eq 0 ] || \
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${lean_missing[@]}"
fi
[ "$need" = demo ] && exit 0
PYTHON=${PYTHON:-python3}
py_missing=()
# Each entry: the module to import, then ":" and the pip requirement where they differ.
for entry in numpy scipy nibabel safetensors pytest "torch:torch==2.13.0+cpu" "nrrd:pynrrd" SimpleITK medpy \
             pydicom pylibjpeg "openjpeg:pylibjpeg-openjpeg" "distributed:dask[distributed]"; do
    module=${entry%%:*}
    spec=${entry#*:}
    "$PYTHON" -c "import $module" 2>/dev/null || py_missing+=("$spec")
done
if [ ${#py_missing[@]} -gt 0 ]; then
    echo "setup: pip installing ${py_missing[*]}"
    "$PYTHON" -m pip install -q "${py_missing[@]}"
fi
