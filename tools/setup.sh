#!/usr/bin/env bash
# Installs what liverseg needs to build, test and run its demo, skipping what is present.
# Debian packages: OpenBLAS, LAPACKE, zlib, pkg-config, cmake. Python: numpy, scipy,
# nibabel, safetensors, pytest, PyTorch's CPU build (the test reference), and the image-file
# and metric references pynrrd, SimpleITK and MedPy.
set -euo pipefail
apt_packages=(libopenblas-dev liblapacke-dev zlib1g-dev libpng-dev pkg-config cmake)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
PYTHON=${PYTHON:-python3}
py_missing=()
# Each entry: the module to import, then ":" and the pip requirement where they differ.
for entry in numpy scipy nibabel safetensors pytest "torch:torch==2.13.0+cpu" "nrrd:pynrrd" SimpleITK medpy; do
    module=${entry%%:*}
    spec=${entry#*:}
    "$PYTHON" -c "import $module" 2>/dev/null || py_missing+=("$spec")
done
if [ ${#py_missing[@]} -gt 0 ]; then
    echo "setup: pip installing ${py_missing[*]}"
    "$PYTHON" -m pip install -q "${py_missing[@]}"
fi
