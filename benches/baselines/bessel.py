#!/usr/bin/env python3
"""Baselines for benches/bessel.rs, on the same inputs.

CPU (--cpu-inputs DIR): SciPy's log(ive(v, x)) + x and log(kve(v, x)) - x on the raw f64 inputs the
Rust bench wrote with SPHEREKIT_BENCH_DUMP=DIR, single-threaded (a ufunc call), nanoseconds per
evaluation (median of passes) over all inputs and over the inputs where SciPy succeeds (a finite
result), and SciPy's failure count (NaN, inf, or an underflow to zero inside the log).

GPU (--gpu, on the GPU machine): torch.special.i0e / i1e (all PyTorch has) on 2^26 elements, f32
and f64, evaluations per second (CUDA events, median), plus SciPy on that machine's CPU.

Prints `RESULT {json}` lines (family "bessel").
"""
import argparse, json, os, sys, time
import numpy as np


def result(**kw):
    kw.setdefault("family", "bessel")
    print("RESULT " + json.dumps(kw), flush=True)


def scipy_cpu(dirname, mixes):
    from scipy import special
    for mix in mixes:
        vp, xp = os.path.join(dirname, f"{mix}_v.f64"), os.path.join(dirname, f"{mix}_x.f64")
        if not (os.path.exists(vp) and os.path.exists(xp)):
            print(f"# no inputs for mix {mix} in {dirname}", file=sys.stderr)
            continue
        v, x = np.fromfile(vp, dtype="<f8"), np.fromfile(xp, dtype="<f8")
        for op, fn in (("log_i", lambda: np.log(special.ive(v, x)) + x),
                       ("log_k", lambda: np.log(special.kve(v, x)) - x)):
            with np.errstate(all="ignore"):
                out = fn()
                samples = []
                for _ in range(5):
                    t = time.perf_counter()
                    fn()
                    samples.append((time.perf_counter() - t) * 1e9 / len(x))
            ok = np.isfinite(out)
            # Time over the successful subset alone too (the comparison).
            with np.errstate(all="ignore"):
                sv, sx = v[ok], x[ok]
                sub = (lambda: np.log(special.ive(sv, sx)) + sx) if op == "log_i" else (lambda: np.log(special.kve(sv, sx)) - sx)
                sub_samples = []
                for _ in range(5):
                    t = time.perf_counter()
                    sub()
                    sub_samples.append((time.perf_counter() - t) * 1e9 / max(1, len(sx)))
            result(op=op, dtype="f64", mix=mix, impl="scipy_1thread", n=int(len(x)),
                   ns_per_eval=float(np.median(samples)), ns_per_eval_successful=float(np.median(sub_samples)),
                   failures=int((~ok).sum()), scipy=__import__("scipy").__version__)


def torch_gpu():
    import torch
    n = 1 << 26
    dev = torch.device("cuda")
    for dtype, name in ((torch.float32, "f32"), (torch.float64, "f64")):
        x = torch.rand(n, device=dev, dtype=dtype) * 100 + 1e-3
        for op, fn in (("i0e", torch.special.i0e), ("i1e", torch.special.i1e)):
            for _ in range(3):
                fn(x)
            torch.cuda.synchronize()
            times = []
            for _ in range(10):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(); fn(x); b.record(); torch.cuda.synchronize()
                times.append(a.elapsed_time(b) * 1e-3)
            t = float(np.median(times))
            result(op=op, dtype=name, mix="uniform_0_100", impl="torch_gpu", n=n, evals_per_s=n / t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-inputs")
    ap.add_argument("--mixes", default="uniform,debye,broadcast")
    ap.add_argument("--gpu", action="store_true")
    a = ap.parse_args()
    if a.cpu_inputs:
        scipy_cpu(a.cpu_inputs, a.mixes.split(","))
    if a.gpu:
        torch_gpu()


if __name__ == "__main__":
    main()
