#!/usr/bin/env python3
"""Benchmark of liverseg's dense CRF against pydensecrf (`pip install pydensecrf2`).

1. One 512×512 IRCADb slice, the same model in both: unary −log p with p clamped to
   [1e-5, 1 − 1e-5], Potts, symmetric normalisation, bilateral kernel on (position/θα,
   grey/θβ) with weight μ1, spatial kernel on position/θγ with weight μ2, the same number
   of mean-field iterations, one thread. pydensecrf works in pixels and uint8 RGB, so θ in
   mm becomes θ/spacing pixels, and HU are mapped to uint8 over a window [lo, hi] (g HU per
   step; values outside are clipped — they differ from the liver by far more than θβ
   anyway); the three identical RGB channels make |ΔRGB| = √3·|Δgrey|, so its srgb is
   √3·θβ/g. The two run alternately, `--repeats` times each, so that a background load
   hits both alike; reports the median time per slice (CPU time of the calling thread —
   the steadier figure on a shared machine — and wall time), the median of the per-repeat
   CPU-time ratios, and how many labels agree.
2. A whole IRCADb volume on all cores: wall time (median of `--volume-repeats` runs)
   with and without the uncertain-region box, and Dice/VOE against the manual mask.
3. The whole volume slice by slice on the same cores: liverseg's slice2d mode on every
   voxel with N threads against pydensecrf on every slice in N worker processes,
   alternating, wall and CPU time (the workers' CPU from /proc).

The probability is the manual liver mask degraded (blurred, shifted, noised where
uncertain) — a stand-in for a network output.

    make build
    LIVERSEG_LIBRARY=.build/release/libliverseg.so PYTHONPATH=bindings/python OPENBLAS_NUM_THREADS=1 \\
        python3 tools/bench_crf.py --data ../shared/data
"""
import argparse
import functools
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crf_search import degraded_probability, scores  # noqa: E402


def timed(fn):
    """(result, CPU s of this thread, wall s) of one call."""
    c, w = time.thread_time(), time.perf_counter()
    result = fn()
    return result, time.thread_time() - c, time.perf_counter() - w


def interleaved(fns, repeats):
    """Calls each of `fns` in turn, `repeats` rounds: (last results, [CPU s], [wall s]) per
    function, the lists over the rounds."""
    runs = [[None, [], []] for _ in fns]
    for _ in range(repeats):
        for fn, run in zip(fns, runs):
            run[0], cpu, wall = timed(fn)
            run[1].append(cpu)
            run[2].append(wall)
    return runs


def pydensecrf_slice(hu, p, spacing, params, window, iterations):
    """pydensecrf on one [x, y] slice; returns the liver labels [x, y]."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
    lo, hi = window
    g = (hi - lo) / 255.0
    image, prob = hu.T, p.T  # pydensecrf wants (rows = y, columns = x)
    height, width = image.shape
    grey = np.clip(np.round((image.astype(np.float32) - lo) / g), 0, 255).astype(np.uint8)
    rgb = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(np.stack([1 - prob, prob]), clip=1e-5)))
    crf.addPairwiseGaussian(sxy=params["theta_gamma_mm"] / spacing, compat=params["mu2"])
    crf.addPairwiseBilateral(sxy=params["theta_alpha_mm"] / spacing, srgb=np.sqrt(3) * params["theta_beta_hu"] / g,
                             rgbim=rgb, compat=params["mu1"])
    q = np.array(crf.inference(iterations)).reshape(2, height, width)
    return (q[1] >= q[0]).T.astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--case", default="ircadb1-17")
    ap.add_argument("--slice", type=int, default=60)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--window", type=float, nargs=2, default=[-160.0, 240.0], help="HU window for pydensecrf's uint8")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=0, help="threads for the whole-volume run")
    ap.add_argument("--volume-repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import nibabel as nib
    import liverseg
    img = nib.load(str(Path(args.data) / args.case / "ct.nii.gz"))
    ct = np.asarray(img.dataobj).astype(np.int16)
    truth = (np.asarray(nib.load(str(Path(args.data) / args.case / "liver.nii.gz")).dataobj) > 0.5).astype(np.uint8)
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3])
    prob = degraded_probability(truth, spacing)
    params = liverseg.crf_default_params()
    kernel = {k: params[k] for k in ("mu1", "mu2", "theta_alpha_mm", "theta_beta_hu", "theta_gamma_mm")}
    print(f"{args.case}: {ct.shape} voxels, spacing {spacing} mm; parameters {kernel}, {args.iterations} iterations")

    # 1. One slice, one thread, whole slice.
    k = args.slice
    hu, p = np.asfortranarray(ct[:, :, k:k + 1]), np.asfortranarray(prob[:, :, k:k + 1])
    (ours, cpu, wall), (theirs, cpu_p, wall_p) = interleaved([
        lambda: liverseg.refine_crf(hu, p, spacing=spacing, threads=1, uncertain_only=False,
                                    n_iterations=args.iterations, **kernel),
        lambda: pydensecrf_slice(ct[:, :, k], prob[:, :, k], spacing[0], kernel, args.window, args.iterations),
    ], args.repeats)
    ratio = np.median(np.array(cpu_p) / np.array(cpu))
    cpu, wall, cpu_p, wall_p = (np.median(x) for x in (cpu, wall, cpu_p, wall_p))
    agree = np.mean(ours[:, :, 0] == theirs)
    threshold_agree = np.mean((p[:, :, 0] >= 0.5) == theirs)
    print(f"slice {k} ({hu.shape[0]}×{hu.shape[1]}), 1 thread, medians of {args.repeats} interleaved runs: "
          f"liverseg {1000 * cpu:.1f} ms CPU ({1000 * wall:.1f} ms wall), "
          f"pydensecrf {1000 * cpu_p:.1f} ms CPU ({1000 * wall_p:.1f} ms wall): {ratio:.2f}× faster (CPU); "
          f"labels agree on {100 * agree:.2f} % of pixels (the thresholded input agrees with pydensecrf on "
          f"{100 * threshold_agree:.2f} %); Dice vs manual: liverseg {scores(ours[:, :, 0], truth[:, :, k])[1]:.4f}, "
          f"pydensecrf {scores(theirs, truth[:, :, k])[1]:.4f}")

    # 2. The whole volume.
    v_thr, d_thr = scores(prob >= 0.5, truth)
    print(f"whole volume, thresholded probability: VOE {v_thr:.2f} %, Dice {d_thr:.4f}")
    # The mode is given each time: the library's default is volume3d.
    for label, extra in [("slice2d, uncertain box", {"mode": "slice2d"}),
                         ("slice2d, every voxel", {"mode": "slice2d", "uncertain_only": False}),
                         ("volume3d, uncertain box", {"mode": "volume3d"}),
                         ("volume3d, every voxel", {"mode": "volume3d", "uncertain_only": False})]:
        ((mask, _, walls),) = interleaved([lambda: liverseg.refine_crf(ct, prob, affine=img.affine, threads=args.threads,
                                                                        n_iterations=args.iterations, **extra)],
                                           args.volume_repeats)
        v, d = scores(mask, truth)
        print(f"whole volume, {label}, threads={args.threads or 'all'}: {np.median(walls):.2f} s wall "
              f"(median of {len(walls)}, range {min(walls):.2f}–{max(walls):.2f}), VOE {v:.2f} %, Dice {d:.4f}")

    # 3. The whole volume, slice by slice, against pydensecrf on every slice, on the same
    #    cores: pydensecrf in as many worker processes as liverseg has threads.
    threads = args.threads or os.cpu_count()
    slices = [(ct[:, :, k], prob[:, :, k]) for k in range(ct.shape[2])]
    job = functools.partial(pydensecrf_slice_job, spacing=spacing[0], params=kernel, window=args.window,
                            iterations=args.iterations)
    with multiprocessing.get_context("fork").Pool(threads) as pool:
        def theirs():
            return np.stack(pool.map(job, slices, chunksize=1), axis=2)

        def ours():
            return liverseg.refine_crf(ct, prob, spacing=spacing, threads=threads, mode="slice2d", uncertain_only=False,
                                       n_iterations=args.iterations, **kernel)
        rounds = []
        for _ in range(args.volume_repeats):
            row = []
            for fn, clock in [(ours, time.process_time), (theirs, workers_cpu)]:
                c, w = clock(), time.perf_counter()
                fn()
                row += [time.perf_counter() - w, clock() - c]
            rounds.append(row)
        (w_ours, c_ours, w_theirs, c_theirs) = (np.median([r[i] for r in rounds]) for i in range(4))
        ratio = np.median([r[2] / r[0] for r in rounds])
    print(f"whole volume, every slice (slice2d, every voxel), {threads} threads / processes, medians of "
          f"{args.volume_repeats} alternating runs: liverseg {w_ours:.2f} s wall ({c_ours:.2f} s CPU), pydensecrf "
          f"{w_theirs:.2f} s wall ({c_theirs:.2f} s CPU): {ratio:.2f}× faster (wall)")


def workers_cpu():
    """CPU seconds so far of this process's live child processes (the pool's workers)."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # the parent pid
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def pydensecrf_slice_job(item, spacing, params, window, iterations):
    """pydensecrf_slice on one (hu, probability) pair, for a worker process."""
    hu, p = item
    return pydensecrf_slice(hu, p, spacing, params, window, iterations)


if __name__ == "__main__":
    main()
