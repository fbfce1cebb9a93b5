"""Forward-pass benchmark: the paper-size 3D DSN on a 160×160×72 patch.

Prints liverseg's median time and GFLOP/s (2 × multiply-accumulates / time) next to the
rate of OpenBLAS's sgemm (2048³, the same library liverseg calls, measured in this run),
and PyTorch CPU on the identical network when torch is installed. Release build; median of
--runs runs after one warm-up.
"""
import argparse
import ctypes
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import liverseg


def macs(arch, shape):
    """Multiply-accumulates of one forward pass (all three outputs)."""
    n0 = int(np.prod(shape)); n1, n2 = n0 // 8, n0 // 64
    c, k = arch["conv_channels"], [int(np.prod(kk)) for kk in arch["conv_kernels"]]
    m, b, cl = arch["main_deconv_channels"], arch["branch2_deconv_channels"], arch["classes"]
    total = c[0] * 1 * k[0] * n0 + c[1] * c[0] * k[1] * n0 + c[2] * c[1] * k[2] * n1 + c[3] * c[2] * k[3] * n1
    total += c[4] * c[3] * k[4] * n2 + c[5] * c[4] * k[5] * n2
    total += 27 * (c[5] * m * n2 + m * cl * n1 + c[1] * cl * n1 + c[3] * b * n2 + b * cl * n1)
    return total


def median_time(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return statistics.median(times)


def sgemm_rate(threads, n=2048):
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_set_num_threads(threads)
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy(); c = np.zeros_like(a)
    p = lambda x: x.ctypes.data_as(ctypes.c_void_p)
    def run():
        blas.cblas_sgemm(101, 111, 111, n, n, n, ctypes.c_float(1), p(a), n, p(b), n, ctypes.c_float(0), p(c), n)
    seconds = median_time(run, 3)
    blas.openblas_set_num_threads(1)   # liverseg's own setting
    return 2 * n**3 / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 160, 72], help="x y z")
    args = parser.parse_args()
    arch = liverseg.paper_architecture()
    shape = tuple(args.shape)
    flop = 2 * macs(arch, shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paper.safetensors"
        weights = liverseg.random_weights(arch, seed=0)
        liverseg.save_model(path, arch, weights)
        model = liverseg.Model(path)
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        print(f"paper 3D DSN forward, input {shape[0]}×{shape[1]}×{shape[2]}, {flop / 1e9:.1f} GFLOP, median of {args.runs}")
        ours = {}
        for threads in (1, 2):
            t = median_time(lambda: model.forward(x, threads=threads), args.runs)
            ours[threads] = t
            print(f"  liverseg  {threads} thread(s): {t:7.3f} s  {flop / t / 1e9:6.1f} GFLOP/s")
        for threads in (1, 2):
            print(f"  OpenBLAS sgemm 2048³, {threads} thread(s): {sgemm_rate(threads):6.1f} GFLOP/s")
        try:
            import torch
        except ImportError:
            print("  PyTorch not installed: no peer comparison")
            return
        from liverseg.torch_train import DSN
        net = DSN(arch)
        with torch.no_grad():
            for name, value in weights.items():
                net.weight(name).copy_(torch.from_numpy(value))
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))[None, None]

        def torch_forward():
            with torch.no_grad():
                return [torch.softmax(s, 1) for s in net(xt)]
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t = median_time(torch_forward, args.runs)
            print(f"  PyTorch {torch.__version__} {threads} thread(s): {t:7.3f} s  {flop / t / 1e9:6.1f} GFLOP/s"
                  f"  → liverseg/PyTorch time ratio {ours[threads] / t:.2f}")


if __name__ == "__main__":
    main()
