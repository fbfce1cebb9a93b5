"""What Swift's run-time checks cost: two builds of libliverseg (e.g. the core at -O and at
-Ounchecked) timed alternately, each run in its own process, on the hot loops: the paper
network's forward pass (random weights) and the dense CRF (slice2d and volume3d) on a real
CT with a smoothed manual mask as probability. Prints the CPU's vector extensions, the
median CPU time (all threads) per build and the median of the per-round ratios (a
background load hits both builds alike within a round).

    python tools/bench_checks.py BUILD_A.so BUILD_B.so [--rounds 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, tempfile, time
import numpy as np
import nibabel as nib
from scipy.ndimage import gaussian_filter
import liverseg
from liverseg.crf import refine_crf
data, shape = sys.argv[1], [int(v) for v in sys.argv[2:5]]
arch = liverseg.paper_architecture()
import resource
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def timed(name, fn):
    # CPU seconds of the whole process (all threads): steadier than wall time when other
    # jobs share the machine.
    start = cpu(); fn(); out[name] = cpu() - start
out = {}
path = os.path.join(tempfile.mkdtemp(), "paper.safetensors")
liverseg.save_model(path, arch, liverseg.random_weights(arch, seed=1))
model = liverseg.Model(path)
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
model.forward(x)
timed("forward", lambda: model.forward(x))
ct = nib.load(f"{data}/ircadb1-01/ct.nii.gz")
a = np.asarray(ct.dataobj).astype(np.int16)
p = gaussian_filter(np.asarray(nib.load(f"{data}/ircadb1-01/liver.nii.gz").dataobj).astype(np.float32), 2.0)
for mode in ("slice2d", "volume3d"):
    timed("crf " + mode, lambda: refine_crf(a, p, affine=ct.affine, mode=mode))
print(json.dumps(out))
"""


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = line.split(":")[1].split()
            return " ".join(f for f in flags if f.startswith(("sse4", "avx", "fma")))
    return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libraries", nargs=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 96, 64], help="forward input x y z (multiples of 4)")
    args = ap.parse_args()
    print("CPU vector extensions:", cpu_flags())
    results = {lib: [] for lib in args.libraries}
    for r in range(args.rounds):
        order = args.libraries if r % 2 == 0 else args.libraries[::-1]
        for lib in order:
            env = dict(os.environ, LIVERSEG_LIBRARY=str(Path(lib).resolve()),
                       PYTHONPATH=str(ROOT / "bindings" / "python"))
            text = subprocess.run([sys.executable, "-c", CHILD, args.data, *map(str, args.shape)],
                                  env=env, check=True, capture_output=True, text=True).stdout
            results[lib].append(json.loads(text.splitlines()[-1]))
        print(f"round {r + 1}: " + "  ".join(f"{Path(l).name} {results[l][-1]}" for l in args.libraries), flush=True)
    a, b = args.libraries
    for key in results[a][0]:
        ta = [x[key] for x in results[a]]; tb = [x[key] for x in results[b]]
        ratio = statistics.median(y / x for x, y in zip(ta, tb))
        print(f"{key:16s} {Path(a).name} {statistics.median(ta):.3f} s  {Path(b).name} {statistics.median(tb):.3f} s  "
              f"median ratio B/A {ratio:.3f}")


if __name__ == "__main__":
    main()
