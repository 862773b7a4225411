#!/usr/bin/env python3
"""PyTorch baselines for benches/gram.rs (Gram-iteration spectral-norm bounds), on the same matrices.

Inputs: the folder benches/gram wrote with SPHEREKIT_BENCH_DUMP=DIR, per case
  <case>.json       dense: {"case", "kind": "dense", "shapes": [[rows, cols], ...], "iterations": T}
                    (no "kind": dense); convolutions: {"case", "kind": "conv",
                    "layers": [[c_out, c_in, k, n], ...], "iterations": T}
  <case>_w.f32      the matrices, raw little-endian f32, one after another, each row-major; or
                    the kernels [c_out, c_in, k, k], one after another, each row-major
  <case>_upper.f64  spherekit's upper bound per matrix or per layer (precision "fast"), raw
                    little-endian f64
for the cases b4096_k64, b65536_k16, net_mixed, d4096 (one 4096 x 4096 matrix) and
resnet18_conv (ResNet-18's 20 convolution layers at 224 x 224, circular padding, stride 1 on each
layer's input side) (a missing one is skipped with a `# ...` note; any other <case>.json in DIR
is run too).

On the GPU, the matrices as float32, with torch.set_float32_matmul_precision("highest") (no
TF32, PyTorch's default), implementations:
  torch_matrix_norm        torch.linalg.matrix_norm(W, ord=2) (the exact sigma_1, an SVD): one
                           call on the [B, m, n] batch, or one call per group of equal shapes
  torch_gram_bmm           the Gram iteration of Delattre et al. as the lip4conv reference code
                           writes it, with a batch dimension: X = W, or W^T when cols > rows (the
                           Gram is min(rows, cols) square); G = X, rescale = 0; T times:
                           r = ||G||_F per matrix, G = G / r, rescale = 2 (rescale + log r),
                           G = G^T G (a bmm); bound = ||G||_F^(1/2^T) exp(rescale / 2^T).
                           One chain on the batch, or one chain per group of equal shapes
  torch_gram_bmm_per_layer the same on one matrix at a time in a Python loop (what the reference
                           code does for a network's layers): cases with several shapes only
  torch_gram_bmm_compiled  torch_gram_bmm under torch.compile (default mode, dynamic=False,
                           fullgraph=True): cases with one shape only and a smaller side below
                           1024 (a large matrix is GEMM-bound), after every eager measurement,
                           and only while at least 30 s of the budget remain
  torch_gemm               one matrix with a smaller side k >= 1024 (d4096): torch.mm(G, G) of
                           its leading k x k block G, the f32 GEMM one Gram step of that size
                           costs (2 k^3 flops): the yardstick of the per-iteration throughput
torch_matrix_norm is skipped (a `#` note, no RESULT) for a matrix whose smaller side is >= 2048
(one SVD of a 4096 x 4096 matrix takes seconds).
Convolution cases ("kind": "conv"), the method of Delattre et al. 2023 (lip4conv):
  torch_conv_gram_per_layer  a Python loop over the layers; per layer: torch.fft.rfft2 of the
                           kernel zero-padded to n x n (the half spectrum, n x (n//2 + 1)
                           frequencies), the blocks as a [freq, c_out, c_in] complex64 batch, the
                           Gram iteration above on it with bmm (conjugate transpose; the Gram of
                           the smaller side: A^H A when c_in <= c_out, else A A^H), the bound per
                           frequency, the max over the frequencies
  torch_conv_gram_grouped  the same with the layers of equal (c_out, c_in, k, n) stacked into
                           one batch (one rfft2 and one Gram chain per shape group)
A case's groups are all timed together as one measurement. Timing: CUDA events around each call
after warm-up (two calls; the first compiles), median of 5-30 runs (fewer, down to 1, when a
call is slow against the budget left).

Output: `RESULT {json}` lines (flushed) with family "gram", op "dense", case, dtype "f32",
precision "f32", impl, matrices, iterations, median_us, matrices_per_s, gflops (the nominal flop
count of the plain algorithm, as benches/gram: per matrix 2 l k^2 + (T - 1) 2 k^3, k = min side,
l = max side), runs; the Gram implementations add max_rel_diff_vs_spherekit = max over the
matrices of |torch bound - spherekit upper| / spherekit upper (f32 against f32 arithmetic:
expect ~1e-6); torch_matrix_norm adds spherekit_rel_excess_min / _max = (spherekit upper -
sigma_1) / sigma_1 (the bound's excess over the exact norm; a negative minimum is the fast
mode's rounding); torch_gram_bmm_compiled adds compile_s; groups for grouped cases; error when
a measurement failed ("skipped: ..." when the time budget ran out). torch_gemm: matrices 1,
iterations 1, gflops = 2 k^3 / time, side k. Convolution cases: op "conv", layers (instead of
matrices), blocks (frequency blocks of all layers), layers_per_s (instead of matrices_per_s),
no gflops, max_rel_diff_vs_spherekit over the layers' bounds (f32 FFT and arithmetic against
spherekit's fast mode: expect ~1e-5), groups for torch_conv_gram_grouped. Lines that start
with '#' are information; the last one is `# done ...`, with what was skipped.

Usage: python3 gram.py --inputs DIR [--time-budget SECONDS]
(torch and numpy are imported only to run, so --help needs neither.) Exit status: 0, 1 when a
measurement failed or no case was found, 2 without torch.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

FAMILY = "gram"
CASES = ["b4096_k64", "b65536_k16", "net_mixed", "d4096", "resnet18_conv"]
MEASURE_S = 2.0  # aim of the timed runs of one measurement
MIN_RUNS, MAX_RUNS = 5, 30
MIN_LEFT_S = 3.0  # below this much budget left no measurement starts
COMPILE_LEFT_S = 30.0  # torch.compile starts only with this much budget left
GEMM_MIN_SIDE = 1024  # one matrix at least this large (smaller side): torch_gemm, no torch.compile
SVD_MAX_SIDE = 2048  # no torch_matrix_norm for a smaller side at least this large


def emit(case, impl, matrices=None, iterations=None, median_us=None, flops=None, error=None, op="dense",
         **extra):
    """One RESULT line; `matrices` counts layers for op "conv" (keys layers, layers_per_s)."""
    unit = "layers" if op == "conv" else "matrices"
    rec = {"family": FAMILY, "op": op, "case": case, "dtype": "f32", "precision": "f32",
           "impl": impl, unit: matrices, "iterations": iterations,
           "median_us": None if median_us is None else round(median_us, 3)}
    if median_us and median_us > 0:
        rec[f"{unit}_per_s"] = float(f"{matrices / (median_us * 1e-6):.4e}") if matrices else None
        if op != "conv":
            rec["gflops"] = round(flops / (median_us * 1e-6) / 1e9, 2) if flops else None
    rec.update(extra)
    if error is not None:
        rec["error"] = str(error).replace("\n", " ")[:300]
    print("RESULT " + json.dumps(rec), flush=True)


def short_error(exc):
    return f"{type(exc).__name__}: {exc}"


def nominal_flops(shapes, iterations):
    total = 0.0
    for rows, cols in shapes:
        k, l = min(rows, cols), max(rows, cols)
        total += 2.0 * l * k * k + (iterations - 1) * 2.0 * k ** 3
    return total


def gram_bound(w, iterations):
    """The Gram-iteration upper bound of every matrix of w ([..., m, n], real or complex), as
    lip4conv computes it."""
    import torch
    herm = (lambda x: x.mH) if w.is_complex() else (lambda x: x.mT)  # noqa: E731
    g = w if w.shape[-1] <= w.shape[-2] else herm(w)
    rescale = 0.0
    for _ in range(iterations):
        r = torch.linalg.matrix_norm(g, keepdim=True)  # Frobenius (real)
        g = g / r
        rescale = 2 * (rescale + torch.log(r))
        g = herm(g) @ g
    bound = torch.linalg.matrix_norm(g) ** (1.0 / 2 ** iterations)
    if torch.is_tensor(rescale):
        bound = bound * torch.exp(rescale[..., 0, 0] / 2 ** iterations)
    return bound


def conv_gram_bound(w, n, iterations):
    """The 2023 bound (lip4conv) of every convolution kernel of w ([..., c_out, c_in, k, k]) with
    circular padding on n x n inputs: rfft2 to the half spectrum, one [freq, c_out, c_in] complex
    batch per kernel, the Gram-iteration bound of each block, the max over the frequencies."""
    import torch
    f = torch.fft.rfft2(w, s=(n, n))  # [..., c_out, c_in, n, n // 2 + 1], complex64
    f = f.movedim((-2, -1), (-4, -3)).flatten(-4, -3)  # [..., n (n // 2 + 1), c_out, c_in]
    return gram_bound(f, iterations).amax(dim=-1)


def read_upper(np, dirname, name, n, what):
    """spherekit's fast upper bounds (n of them), or None with a `#` note."""
    up = os.path.join(dirname, f"{name}_upper.f64")
    if not os.path.exists(up):
        print(f"# {name}: no {name}_upper.f64: no comparison with spherekit", flush=True)
        return None
    u = np.fromfile(up, dtype="<f8")
    if u.size != n:
        print(f"# {name}: {name}_upper.f64 holds {u.size} values for {n} {what}: "
              "no comparison with spherekit", flush=True)
        return None
    return u


def load_case(torch, np, dirname, name):
    with open(os.path.join(dirname, f"{name}.json"), encoding="utf-8") as f:
        meta = json.load(f)
    kind = meta.get("kind", "dense")
    if kind == "conv":
        return ConvCase(torch, np, dirname, name, meta)
    if kind != "dense":
        raise ValueError(f'{name}.json: unknown kind "{kind}"')
    return Case(torch, np, dirname, name, meta)


class Case:
    """One dumped case: the matrices on the GPU, grouped by shape, and spherekit's bounds."""
    op = "dense"

    def __init__(self, torch, np, dirname, name, meta):
        self.name = name
        self.shapes = [(int(r), int(c)) for r, c in meta["shapes"]]
        self.iterations = int(meta["iterations"])
        self.n = len(self.shapes)
        self.flops = nominal_flops(self.shapes, self.iterations)
        w = np.fromfile(os.path.join(dirname, f"{name}_w.f32"), dtype="<f4")
        want = sum(r * c for r, c in self.shapes)
        if w.size != want:
            raise ValueError(f"{name}_w.f32 holds {w.size} values, the shapes {want}")
        groups = {}  # (rows, cols) -> matrix indices, in order of first appearance
        offsets = []
        off = 0
        for i, (r, c) in enumerate(self.shapes):
            groups.setdefault((r, c), []).append(i)
            offsets.append(off)
            off += r * c
        dev = torch.device("cuda")
        flat = torch.from_numpy(w.astype(np.float32, copy=False))
        self.groups = []  # (indices, [b, r, c] tensor)
        for (r, c), idx in groups.items():
            if len(groups) == 1:
                batch = flat.view(len(idx), r, c)
            else:
                batch = torch.stack([flat[offsets[i]:offsets[i] + r * c].view(r, c) for i in idx])
            self.groups.append((idx, batch.to(dev).contiguous()))
        # One separate tensor per matrix (a network's layers), for the per-layer loop.
        self.layers = None
        if len(self.groups) > 1:
            self.layers = [None] * self.n
            for idx, batch in self.groups:
                for j, i in enumerate(idx):
                    self.layers[i] = batch[j].clone()
        self.upper = read_upper(np, dirname, name, self.n, "matrices")
        self.max_k = max((min(s) for s in self.shapes), default=0)

    @property
    def uniform(self):
        return len(self.groups) == 1

    def describe(self):
        return (f"{self.n} matrices in {len(self.groups)} shape group(s), T = {self.iterations}, "
                f"{self.flops / 1e9:.3f} nominal GFLOP")


class ConvCase:
    """One dumped convolution case: every layer's kernel on the GPU (one tensor each, and stacked
    per (c_out, c_in, k, n) group), and spherekit's per-layer bounds."""
    op = "conv"
    uniform = False  # no torch.compile variant
    flops = None

    def __init__(self, torch, np, dirname, name, meta):
        self.name = name
        self.shapes = [tuple(int(v) for v in layer) for layer in meta["layers"]]
        if any(len(s) != 4 for s in self.shapes):
            raise ValueError(f"{name}.json: a layer is not [c_out, c_in, k, n]")
        self.iterations = int(meta["iterations"])
        self.n = len(self.shapes)
        self.blocks = sum(n * (n // 2 + 1) for _, _, _, n in self.shapes)
        w = np.fromfile(os.path.join(dirname, f"{name}_w.f32"), dtype="<f4")
        want = sum(co * ci * k * k for co, ci, k, _ in self.shapes)
        if w.size != want:
            raise ValueError(f"{name}_w.f32 holds {w.size} values, the layers {want}")
        flat = torch.from_numpy(w.astype(np.float32, copy=False)).to(torch.device("cuda"))
        self.layers = []  # (kernel [c_out, c_in, k, k], n)
        groups = {}  # (c_out, c_in, k, n) -> layer indices, in order of first appearance
        off = 0
        for i, (co, ci, k, n) in enumerate(self.shapes):
            self.layers.append((flat[off:off + co * ci * k * k].view(co, ci, k, k).clone(), n))
            groups.setdefault((co, ci, k, n), []).append(i)
            off += co * ci * k * k
        self.groups = [(idx, torch.stack([self.layers[i][0] for i in idx]), shape[3])
                       for shape, idx in groups.items()]
        self.upper = read_upper(np, dirname, name, self.n, "layers")

    def describe(self):
        return (f"{self.n} convolution layers, {self.blocks} frequency blocks, {len(self.groups)} shape "
                f"group(s), T = {self.iterations}")


class Runner:
    def __init__(self, args, torch, np):
        self.t0 = time.monotonic()
        self.args = args
        self.torch = torch
        self.np = np
        self.failures = 0
        self.skipped = []

    def left(self):
        return self.args.time_budget - (time.monotonic() - self.t0)

    def bench(self, fn):
        """(median µs per call, runs, the output of a call, seconds of the first call): CUDA events
        around each call."""
        torch = self.torch
        t_first = time.monotonic()
        out = fn()  # warm-up (a torch.compile function compiles here)
        torch.cuda.synchronize()
        t_first = time.monotonic() - t_first
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = fn()
        b.record()
        b.synchronize()
        est = max(a.elapsed_time(b) * 1e-3, 1e-6)  # seconds per call
        runs = max(MIN_RUNS, min(MAX_RUNS, int(MEASURE_S / est)))
        room = 0.5 * self.left()
        if runs * est > room:
            runs = max(1, int(room / est))
        times = []
        for _ in range(runs):
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times) * 1e3, runs, out, t_first

    def gather(self, case, parts, per_layer):
        """One f64 numpy vector in the case's matrix order from per-group (or per-matrix) outputs."""
        np = self.np
        out = np.empty(case.n)
        if per_layer:
            for i, p in enumerate(parts):
                out[i] = float(p)
        else:
            for group, p in zip(case.groups, parts):
                out[np.asarray(group[0])] = p.double().cpu().numpy().reshape(-1)
        return out

    def compare(self, case, impl, got):
        """Extra RESULT keys comparing the torch figures with spherekit's upper bounds."""
        np = self.np
        if case.upper is None:
            return {}
        sk = case.upper
        use = np.isfinite(sk) & (sk > 0)
        bad = int((~np.isfinite(got[use])).sum())
        extra = {"nonfinite": bad} if bad else {}
        ok = use & np.isfinite(got)
        if not ok.any():
            return extra
        if impl == "torch_matrix_norm":
            ok &= got > 0
            excess = (sk[ok] - got[ok]) / got[ok]
            extra["spherekit_rel_excess_min"] = float(f"{excess.min():.3e}")
            extra["spherekit_rel_excess_max"] = float(f"{excess.max():.3e}")
        else:
            extra["max_rel_diff_vs_spherekit"] = float(f"{(np.abs(got[ok] - sk[ok]) / sk[ok]).max():.3e}")
        return extra

    def measure(self, case, impl, make_fn, min_left=MIN_LEFT_S, counts=None, **extra):
        """Times one implementation on a case and prints its RESULT (an error never escapes).
        `counts`: (matrices, iterations, flops) to report instead of the case's, and then no
        comparison of the output with spherekit's bounds (torch_gemm)."""
        count, iterations, flops = counts or (case.n, case.iterations, case.flops)
        if case.op == "conv":
            extra = {"blocks": case.blocks, **extra}
        if self.left() < min_left:
            self.skipped.append(f"{case.name}/{impl}")
            emit(case.name, impl, count, iterations, op=case.op,
                 error=f"skipped: time budget ({max(0.0, self.left()):.0f} s left, {min_left:.0f} s needed)",
                 **extra)
            return
        try:
            fn = make_fn()
            us, runs, out, first_s = self.bench(fn)
            if impl == "torch_gram_bmm_compiled":
                extra["compile_s"] = round(first_s, 1)  # the first call: compilation and one run
            if counts is None:
                got = self.gather(case, out if isinstance(out, list) else [out], impl.endswith("_per_layer"))
                extra.update(self.compare(case, impl, got))
            emit(case.name, impl, count, iterations, us, flops, op=case.op, runs=runs, **extra)
        except Exception as exc:  # noqa: BLE001 (every failure becomes a RESULT with an error)
            self.failures += 1
            emit(case.name, impl, count, iterations, op=case.op, error=short_error(exc), **extra)
        finally:
            try:
                self.torch.cuda.synchronize()
                self.torch.cuda.empty_cache()
            except Exception as exc:  # noqa: BLE001 (a sticky CUDA error: the next ones report it)
                print(f"# {case.name}/{impl}: cleanup: {short_error(exc)}", flush=True)

    def eager(self, case):
        torch, t = self.torch, case.iterations
        batches = [b for _, b in case.groups]
        grouped = {} if case.uniform else {"groups": len(case.groups)}

        def norm():
            with torch.no_grad():
                return [torch.linalg.matrix_norm(b, ord=2) for b in batches]

        def bmm():
            with torch.no_grad():
                return [gram_bound(b, t) for b in batches]
        # The Gram iteration first: the targets are against it.
        self.measure(case, "torch_gram_bmm", lambda: bmm, **grouped)
        if case.n == 1 and case.max_k >= GEMM_MIN_SIDE:
            k = case.max_k
            g = batches[0][0, :k, :k].contiguous()

            def gemm():
                with torch.no_grad():
                    return torch.mm(g, g)
            self.measure(case, "torch_gemm", lambda: gemm, counts=(1, 1, 2.0 * k ** 3), side=k)
        if case.max_k >= SVD_MAX_SIDE:
            print(f"# {case.name}: torch_matrix_norm skipped (an SVD with a smaller side of {case.max_k} "
                  f">= {SVD_MAX_SIDE} takes seconds)", flush=True)
        else:
            self.measure(case, "torch_matrix_norm", lambda: norm, **grouped)
        if case.layers is not None:
            layers = case.layers

            def per_layer():
                with torch.no_grad():
                    return [gram_bound(w, t) for w in layers]
            self.measure(case, "torch_gram_bmm_per_layer", lambda: per_layer)

    def conv_eager(self, case):
        torch, t = self.torch, case.iterations
        layers, groups = case.layers, case.groups

        def per_layer():
            with torch.no_grad():
                return [conv_gram_bound(w, n, t) for w, n in layers]

        def grouped():
            with torch.no_grad():
                return [conv_gram_bound(w, n, t) for _, w, n in groups]
        # The per-layer loop first: the target is against it.
        self.measure(case, "torch_conv_gram_per_layer", lambda: per_layer)
        self.measure(case, "torch_conv_gram_grouped", lambda: grouped, groups=len(groups))

    def compiled(self, case):
        torch, t = self.torch, case.iterations
        batch = case.groups[0][1]

        def make():
            torch._dynamo.reset()
            fn = torch.compile(lambda w: gram_bound(w, t), dynamic=False, fullgraph=True)

            def call():
                with torch.no_grad():
                    return fn(batch)
            return call
        self.measure(case, "torch_gram_bmm_compiled", make, min_left=COMPILE_LEFT_S)

    def run(self, names):
        torch = self.torch
        if not torch.cuda.is_available():
            print("# ERROR: torch sees no CUDA device", flush=True)
            return 1
        torch.set_float32_matmul_precision("highest")
        props = torch.cuda.get_device_properties(0)
        print(f"# torch {torch.__version__}, CUDA {torch.version.cuda}, {props.name}; float32 matmul "
              f"precision {torch.get_float32_matmul_precision()}; budget {self.args.time_budget:.0f} s",
              flush=True)
        cases = []
        for name in names:
            if self.left() < MIN_LEFT_S:
                self.skipped.append(f"{name} (not loaded)")
                continue
            try:
                case = load_case(torch, self.np, self.args.inputs, name)
            except Exception as exc:  # noqa: BLE001
                self.failures += 1
                print(f"# {name}: cannot load: {short_error(exc)}", flush=True)
                emit(name, "load", error=short_error(exc))
                continue
            print(f"# {name}: {case.describe()}", flush=True)
            cases.append(case)
            if case.op == "conv":
                self.conv_eager(case)
            else:
                self.eager(case)
        # torch.compile last: its compilation is slow and the eager figures matter more.
        for case in cases:
            if not case.uniform:
                continue
            if case.max_k >= GEMM_MIN_SIDE:
                print(f"# {case.name}: no torch.compile (one {case.max_k}-wide matrix: GEMM-bound)", flush=True)
                continue
            self.compiled(case)
        skipped = f"; skipped (time budget): {', '.join(self.skipped)}" if self.skipped else "; nothing skipped"
        print(f"# done in {time.monotonic() - self.t0:.1f} s, {len(cases)} case(s), {self.failures} failed "
              f"measurement(s){skipped}", flush=True)
        return 1 if self.failures or not cases else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", required=True, help="the folder benches/gram dumped (SPHEREKIT_BENCH_DUMP)")
    ap.add_argument("--time-budget", type=float, default=120.0,
                    help="seconds; no measurement starts with less than %g s of it left, no "
                         "torch.compile with less than %g s (default 120)" % (MIN_LEFT_S, COMPILE_LEFT_S))
    args = ap.parse_args()
    t0 = time.monotonic()
    if not os.path.isdir(args.inputs):
        print(f"# no inputs folder {args.inputs} (run benches/gram with SPHEREKIT_BENCH_DUMP)", flush=True)
        print("# done: no case", flush=True)
        return 1
    found = sorted(f[:-len(".json")] for f in os.listdir(args.inputs) if f.endswith(".json"))
    names = [c for c in CASES if c in found] + [c for c in found if c not in CASES]
    for c in CASES:
        if c not in found:
            print(f"# no {c}.json in {args.inputs}: case {c} skipped", flush=True)
    if not names:
        print("# done: no case", flush=True)
        return 1
    try:
        import numpy as np
        import torch
    except ImportError as exc:
        print(f"# ERROR: {short_error(exc)} (torch and numpy are needed)", flush=True)
        return 2
    runner = Runner(args, torch, np)
    runner.t0 = t0  # the budget counts the imports
    return runner.run(names)


if __name__ == "__main__":
    sys.exit(main())
