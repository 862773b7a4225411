#!/usr/bin/env python3
"""PyTorch baselines for spherekit's simplex random features (run on the GPU machine).

Same shapes and semantics as the Rust bench (benches/simplex.rs):

- features: phi = m^-1/2 (exp(s x W^T - s^2 |x|^2 / 2 - shift) + eps), s = d^-1/4, shift the
  row max of the exponent (variant "row") or none ("none"); x [2^20, 64] bf16, W [256, 64];
  computed as matmul + max + exp in the input dtype (what a PyTorch user writes).
- FAVOR+ non-causal: out = phiq (phik^T v) / (phiq (phik^T 1) + guard) by einsum, with the
  features as above (keys shifted by their sequence max).
- FAVOR+ causal by cumsum: S = cumsum(phik v^T), z = cumsum(phik) (the [L, m, dv] states are
  materialized, as in performer-pytorch's causal_linear_attention_noncuda); heads are processed
  in groups small enough to fit memory.
- scaled_dot_product_attention (non-causal and causal) on the same q, k, v.
- at 4k, a training step (op favor_*_fwd_bwd): forward + autograd backward of the einsum/cumsum
  forms and of SDPA, with gradients for q, k and v.

batch x heads x length = 2^20 rows, head_dim 64, m = 256, bf16. Timing: CUDA events, after
warm-up, median of many runs. Output: `RESULT {json}` lines with the keys of the Rust bench
(family, op, dtype, rows/heads/len, impl = torch_* , median_us, and error when something failed).

Usage: python3 simplex.py [--quick] [--time-budget SECONDS]
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

ROWS = 1 << 20
DIM = 64
M = 256
EPS = 1e-6
GUARD = 1e-6
LENS = [1024, 4096, 16384, 65536]
TRAIN_LEN = 4096


def result(**kv):
    print("RESULT " + json.dumps({"family": "simplex", **kv}), flush=True)


def median_us(fn, warmup=3, runs=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    return statistics.median(times)


def features(x, w, shift_over=None):
    """Positive softmax-kernel features; shift_over: None (row max) or 'seq' (dims -2 and -1)."""
    s = DIM ** -0.25
    a = (s * x) @ w.t() - (s * s / 2) * (x * x).sum(-1, keepdim=True)
    if shift_over == "seq":
        a = a - a.amax(dim=(-2, -1), keepdim=True)
    elif shift_over == "row":
        a = a - a.amax(dim=-1, keepdim=True)
    return (torch.exp(a) + EPS) * (M ** -0.5)


def favor_noncausal(q, k, v, w):
    pq, pk = features(q, w, "row"), features(k, w, "seq")
    kv = torch.einsum("bhlm,bhld->bhmd", pk, v)
    den = torch.einsum("bhlm,bhm->bhl", pq, pk.sum(-2)) + GUARD
    return torch.einsum("bhlm,bhmd->bhld", pq, kv) / den.unsqueeze(-1)


def favor_causal_cumsum(q, k, v, w, group):
    outs = []
    for h in range(0, q.shape[1], group):
        qs, ks, vs = q[:, h : h + group], k[:, h : h + group], v[:, h : h + group]
        pq, pk = features(qs, w, "row"), features(ks, w, "seq")
        s = torch.cumsum(torch.einsum("bhlm,bhld->bhlmd", pk, vs), dim=2)
        z = torch.cumsum(pk, dim=2)
        num = torch.einsum("bhlm,bhlmd->bhld", pq, s)
        den = (pq * z).sum(-1, keepdim=True) + GUARD
        outs.append(num / den)
    return torch.cat(outs, dim=1)


def common_keys(heads, length):
    return dict(dtype="bf16", heads=heads, len=length, dim=DIM, features=M)


def train_step(q, k, v, w, common):
    """Forward + backward (gradients of q, k, v) of each torch form, timed together."""
    dout = torch.randn_like(v)
    q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
    heads, length = common["heads"], common["len"]
    forms = [
        (False, "torch_einsum", lambda: favor_noncausal(q, k, v, w)),
        (True, "torch_cumsum", lambda: favor_causal_cumsum(
            q, k, v, w, max(1, (1 << 29) // (length * M * DIM)))),
        (False, "torch_sdpa", lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)),
        (True, "torch_sdpa", lambda: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True)),
    ]
    for causal, impl, fwd in forms:
        op = ("favor_causal" if causal else "favor_noncausal") + "_fwd_bwd"
        try:
            def step():
                q.grad = k.grad = v.grad = None
                torch.autograd.backward(fwd(), dout)
            us = median_us(step, 1, 5)
            result(op=op, impl=impl, median_us=round(us, 3), **common)
        except Exception as e:  # noqa: BLE001
            result(op=op, impl=impl, error=str(e)[:200], **common)
            torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--time-budget", type=float, default=300.0)
    args = ap.parse_args()
    if torch is None or not torch.cuda.is_available():
        print("# simplex.py: skipped: no torch with CUDA")
        return 0
    start = time.time()
    dev = torch.device("cuda")
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    torch.manual_seed(0)
    w = torch.randn(M, DIM, device=dev, dtype=torch.bfloat16)
    x = torch.randn(ROWS, DIM, device=dev, dtype=torch.bfloat16)
    nbytes = ROWS * (DIM + M) * 2
    for variant in ["none", "row"]:
        with torch.no_grad():
            us = median_us(lambda: features(x, w, None if variant == "none" else "row"))
        result(op="features", dtype="bf16", rows=ROWS, dim=DIM, features=M, variant=variant,
               impl="torch_eager", median_us=round(us, 3), bytes=nbytes,
               gbps=round(nbytes / us / 1e3, 1))
    del x
    lens = LENS[:2] if args.quick else LENS
    for length in lens:
        heads = ROWS // length
        q, k, v = (torch.randn(1, heads, length, DIM, device=dev, dtype=torch.bfloat16) for _ in range(3))
        for causal in [False, True]:
            if time.time() - start > args.time_budget:
                print("# simplex.py: time budget spent")
                return 0
            common = common_keys(heads, length)
            op = "favor_causal" if causal else "favor_noncausal"
            try:
                with torch.no_grad():
                    if causal:
                        # [group, L, m, dv] bf16 states: keep them near 2 GiB.
                        group = max(1, (1 << 30) // (length * M * DIM))
                        us = median_us(lambda: favor_causal_cumsum(q, k, v, w, group), 1, 5)
                        result(op=op, impl="torch_cumsum", median_us=round(us, 3), **common)
                    else:
                        us = median_us(lambda: favor_noncausal(q, k, v, w))
                        result(op=op, impl="torch_einsum", median_us=round(us, 3), **common)
                    us = median_us(lambda: torch.nn.functional.scaled_dot_product_attention(
                        q, k, v, is_causal=causal))
                    result(op=op, impl="torch_sdpa", median_us=round(us, 3), **common)
            except Exception as e:  # noqa: BLE001 (out of memory and friends are results too)
                result(op=op, impl="torch", error=str(e)[:200], **common)
                torch.cuda.empty_cache()
        if length == TRAIN_LEN:
            train_step(q, k, v, w, common_keys(heads, length))
        del q, k, v
        torch.cuda.empty_cache()
    print("# done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
