#!/usr/bin/env python3
"""The benchmark suite (`make bench`): liverseg and its peers side by side, in one run.

  1. forward pass of the paper 3D DSN on 160×160×72 — liverseg vs PyTorch CPU (same weights),
     with liverseg's rate in GFLOP/s (2 × multiply-accumulates / time) beside OpenBLAS sgemm's;
  2. a training step (eq. 3 loss and every gradient) on a 64×64×48 patch, one thread —
     liverseg vs PyTorch autograd on the same network and loss;
  3. the dense CRF — tools/bench_crf.py (one slice and the whole IRCADb-17 volume against
     pydensecrf2), when pydensecrf2 is installed;
  4. `liverseg segment` on IRCADb-17 with the bundled model, end to end, 2 threads, with and
     without the CRF — vs the same pipeline in Python (nibabel, scipy, PyTorch, pydensecrf2:
     tools/python_pipeline.py), wall time, peak memory and the masks' agreement;
  5. peak resident memory of `liverseg segment` on 512×512×119 (IRCADb-17) and on
     512×512×600 and ×800 CTs made by stacking IRCADb-01 (written to a temporary folder).

Each comparison alternates the two sides `--repeats` times, so a background load hits both
alike, and reports medians and the median of the per-round ratios. The CPU, its vector
extensions and the load average are printed first: figures from different machines or
loads are not comparable; ratios from one run are. `--markdown FILE` appends the run as a
dated section (docs/benchmarks.md keeps the history). Release build:

    make build cli && LIVERSEG_LIBRARY=.build/release/libliverseg.so PYTHONPATH=bindings/python \\
        python3 tools/bench.py --data ../shared/data --markdown docs/benchmarks.md
"""
import argparse
import ctypes
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import liverseg

ROOT = Path(__file__).resolve().parent.parent


def cpu_description():
    """(model name, vector extensions, logical cores, 1-minute load average)."""
    model, flags = "unknown", set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    vectors = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4")))
    return model, vectors, os.cpu_count(), os.getloadavg()[0]


def macs(arch, shape):
    """Multiply-accumulates of one forward pass (all three outputs)."""
    n0 = int(np.prod(shape)); n1, n2 = n0 // 8, n0 // 64
    c, k = arch["conv_channels"], [int(np.prod(kk)) for kk in arch["conv_kernels"]]
    m, b, cl = arch["main_deconv_channels"], arch["branch2_deconv_channels"], arch["classes"]
    total = c[0] * 1 * k[0] * n0 + c[1] * c[0] * k[1] * n0 + c[2] * c[1] * k[2] * n1 + c[3] * c[2] * k[3] * n1
    total += c[4] * c[3] * k[4] * n2 + c[5] * c[4] * k[5] * n2
    total += 27 * (c[5] * m * n2 + m * cl * n1 + c[1] * cl * n1 + c[3] * b * n2 + b * cl * n1)
    return total


def sgemm_rate(threads, n=2048):
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_set_num_threads(threads)
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy(); c = np.zeros_like(a)
    p = lambda x: x.ctypes.data_as(ctypes.c_void_p)
    def run():
        blas.cblas_sgemm(101, 111, 111, n, n, n, ctypes.c_float(1), p(a), n, p(b), n, ctypes.c_float(0), p(c), n)
    run()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    blas.openblas_set_num_threads(1)   # liverseg's own setting
    return 2 * n**3 / seconds / 1e9


def alternate(fns, repeats):
    """Runs each of `fns` in turn for `repeats` rounds after one warm-up each; returns the
    wall times per function, over the rounds."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return times


def comparison(label, ours, peer, peer_name):
    """A table row: medians and the median of the per-round ratios peer / liverseg."""
    ratio = statistics.median(p / o for o, p in zip(ours, peer))
    return (f"| {label} | {statistics.median(ours):.3f} s | {peer_name} {statistics.median(peer):.3f} s "
            f"| {ratio:.2f}× |")


def network_benchmarks(repeats):
    """Rows for the forward pass (1 and 2 threads) and the training step (1 thread)."""
    import torch
    import torch.nn.functional as F
    from liverseg.torch_train import DSN
    arch = liverseg.paper_architecture()
    weights = liverseg.random_weights(arch, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paper.safetensors"
        liverseg.save_model(path, arch, weights)
        model = liverseg.Model(path)
        net = DSN(arch)
        with torch.no_grad():
            for name, value in weights.items():
                net.weight(name).copy_(torch.from_numpy(value))
        rng = np.random.default_rng(1)

        x = rng.standard_normal((160, 160, 72)).astype(np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))[None, None]

        def torch_forward():
            with torch.no_grad():
                return [torch.softmax(s, 1) for s in net(xt)]
        flop = 2 * macs(arch, x.shape)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ours, peer = alternate([lambda: model.forward(x, threads=threads), torch_forward], repeats)
            rows.append(comparison(
                f"forward, paper DSN, 160×160×72 ({flop / 1e9:.0f} GFLOP), {threads} thread(s); liverseg "
                f"{flop / statistics.median(ours) / 1e9:.0f} GFLOP/s, OpenBLAS sgemm 2048³ {sgemm_rate(threads):.0f} GFLOP/s",
                ours, peer, f"PyTorch {torch.__version__}"))

        patch = rng.standard_normal((64, 64, 48)).astype(np.float32)
        labels = (rng.random((64, 64, 48)) < 0.3).astype(np.uint8)
        pt = torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 1, 0)))[None, None]
        yt = torch.from_numpy(np.ascontiguousarray(labels.transpose(2, 1, 0)).astype(np.int64))[None]

        def torch_step():
            net.zero_grad()
            main, b1, b2 = net(pt)
            loss = F.cross_entropy(main, yt) + 0.3 * F.cross_entropy(b1, yt) + 0.4 * F.cross_entropy(b2, yt)
            loss.backward()
        torch.set_num_threads(1)
        ours, peer = alternate([lambda: model.loss_and_gradient(patch, labels, threads=1), torch_step], repeats)
        rows.append(comparison("training step (loss + all gradients), paper DSN, 64×64×48, 1 thread", ours, peer,
                               "PyTorch autograd"))
    return rows


def measured(command, env=None):
    """Runs `command` under GNU time; returns (wall s, peak RSS MB of that process). (The
    rusage of a child forked from this process would count this process's pages, PyTorch's
    included, until the child execs.)"""
    command = ["/usr/bin/time", "-f", "peak-rss-kb %M", *map(str, command)]
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr}")
    kilobytes = int(result.stderr.strip().splitlines()[-1].split()[-1])
    return wall, kilobytes / 1024


def cli(*args):
    """`liverseg ARGS` under `measured`."""
    return measured([os.environ.get("LIVERSEG_CLI", str(ROOT / ".build/release/liverseg-cli")), *args])


def dice(a, b):
    import nibabel as nib
    a, b = (np.asarray(nib.load(str(path)).dataobj) > 0 for path in (a, b))
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def pipeline_benchmarks(data, repeats):
    rows = []
    case = Path(data) / "ircadb1-17" / "ct.nii.gz"
    model = liverseg.default_model_path()
    peer_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "bindings" / "python"), str(ROOT / "tools"), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "ours.nii.gz", Path(tmp) / "theirs.nii.gz"
        try:
            import torch  # noqa: F401
            import pydensecrf.densecrf  # noqa: F401
            sides = (("--no-crf", "without the CRF", "nibabel + scipy + PyTorch"),
                     ("--crf", "with the CRF (the default)", "nibabel + scipy + PyTorch + pydensecrf2"))
        except ImportError:
            rows.append("| `segment` end to end | | PyTorch or pydensecrf2 not installed: no Python pipeline | |")
            sides = ()
        for flag, label, peer_name in sides:
            runs = {"ours": [], "peer": []}
            for _ in range(repeats):
                runs["ours"].append(cli("segment", case, ours, flag, "--threads", "2", "--quiet"))
                runs["peer"].append(measured([sys.executable, ROOT / "tools" / "python_pipeline.py", model, case, theirs,
                                              "--threads", "2"] + (["--no-crf"] if flag == "--no-crf" else []),
                                             env=peer_env))
            ratio = statistics.median(p[0] / o[0] for o, p in zip(runs["ours"], runs["peer"]))
            rss = {side: max(r[1] for r in runs[side]) for side in runs}
            rows.append(f"| `segment` {label}, IRCADb-17 (512×512×119), 2 threads, bundled model; peak RSS "
                        f"{rss['ours']:.0f} MB vs {rss['peer']:.0f} MB; masks agree to Dice {dice(ours, theirs):.4f} "
                        f"| {statistics.median(r[0] for r in runs['ours']):.2f} s "
                        f"| Python pipeline ({peer_name}, tools/python_pipeline.py) "
                        f"{statistics.median(r[0] for r in runs['peer']):.2f} s | {ratio:.2f}× |")
        def peak_rss_rows(ct, label):
            """Peak RSS of `segment` on `ct` with the CRF (the default) and without."""
            for flag, crf in (("--crf", "with the CRF (the default)"), ("--no-crf", "without the CRF")):
                _, rss = cli("segment", ct, Path(tmp) / "m.nii.gz", flag, "--quiet")
                rows.append(f"| peak RSS of `segment`, {label}, {crf} | {rss:.0f} MB | | |")
        peak_rss_rows(case, "512×512×119")
        import nibabel as nib
        source = nib.load(Path(data) / "ircadb1-01" / "ct.nii.gz")
        ct = np.asarray(source.dataobj).astype(np.int16)
        for slices in (600, 800):
            stacked = np.concatenate([ct] * (slices // ct.shape[2] + 1), axis=2)[:, :, :slices]
            big = Path(tmp) / f"ct{slices}.nii"
            nib.save(nib.Nifti1Image(stacked, source.affine), big)
            del stacked
            peak_rss_rows(big, f"512×512×{slices} (IRCADb-01 stacked)")
            big.unlink()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--markdown", help="append the run to this Markdown file")
    args = ap.parse_args()
    model, vectors, cores, load = cpu_description()
    header = [f"### {datetime.date.today().isoformat()} — {model}, {cores} logical cores",
              "", f"Vector extensions: {' '.join(vectors)}. Load average at the start: {load:.2f}"
              f" (above 0.5 the machine was busy: compare ratios, not times).", "",
              "| benchmark | liverseg | peer | peer / liverseg time |", "|---|---|---|---|"]
    print("\n".join(header), flush=True)
    rows = []
    try:
        import torch  # noqa: F401
        rows += network_benchmarks(args.repeats)
    except ImportError:
        rows.append("| forward, training step | | PyTorch not installed: no comparison | |")
    for row in rows:
        print(row, flush=True)
    pipeline = pipeline_benchmarks(args.data, max(3, args.repeats // 2))
    print("\n".join(pipeline), flush=True)
    rows += pipeline
    crf = ""
    try:
        import pydensecrf.densecrf  # noqa: F401
        result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_crf.py"), "--data", args.data],
                                capture_output=True, text=True, check=True)
        crf = "\nDense CRF (tools/bench_crf.py):\n\n```\n" + result.stdout.strip() + "\n```\n"
    except ImportError:
        crf = "\nDense CRF: pydensecrf2 is not installed (`pip install pydensecrf2`): no CRF comparison.\n"
    print(crf)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n" + "\n".join(header + rows) + "\n" + crf)


if __name__ == "__main__":
    main()
