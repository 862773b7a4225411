#!/usr/bin/env python3
"""Generates the constant tables of the log-Bessel family from their definitions, in exact or
80-digit arithmetic, into src/bessel/consts.rs and kernels/bessel_consts.cuh (one source of truth
for the Rust reference and the CUDA kernels). Run from the repository root:

    python3 scripts/gen_bessel_consts.py

Tables:
- DEBYE: the Debye polynomials of DLMF 10.41.10, u_k(t) = t^k U_k(t^2), as coefficients of U_k
  in s = t^2 (k = 1..DEBYE_TERMS), from the exact recurrence DLMF 10.41.9 in rationals.
- ETA_Z0, ETA_TAYLOR: the zero z0 of eta(z) = sqrt(1+z^2) - asinh(1/z) (Debye's exponent) as a
  double-double, and the Taylor coefficients of eta at z0, for the window |z - z0| <= 0.3 where
  v * eta(x/v) would otherwise lose digits to cancellation.
- RGAMMA_TAYLOR: coefficients of 1/Gamma(1+z) = sum c_k z^k (entire; DLMF 5.7.1).
- LGAMMA_STIRLING: B_2k / (2k (2k-1)), the Stirling series of log Gamma.
- TRAPEZOID_COSH_M1, TRAPEZOID_EXP, TRAPEZOID_EXP_NEG: cosh(t_k) - 1, e^(t_k), e^(-t_k) at the
  nodes t_k = k/6 (k = 1..TRAPEZOID_NODES) of the trapezoidal rule for K_mu(x), 1 < x <= 8.

The f32 kernels of log I and log K (kernels/bessel.cu, section "f32 evaluation") have their own
tables, in float, for a 2^-24 target: DEBYE32 (U_1..U_DEBYE32_TERMS and the rho from which
fewer terms suffice, truncation below 1e-8), RGAMMA32 (the first terms of 1/Gamma(1+z), enough
for |z| <= 1/2) and TRAPEZOID32 (nodes t_k = k/4).
"""
from fractions import Fraction as F
import mpmath as mp
import os, sys

mp.mp.dps = 80
DEBYE_TERMS = 13
ETA_TERMS = 56
RGAMMA_TERMS = 28
STIRLING_TERMS = 12
TRAPEZOID_NODES = 28  # t up to 4.67: the rule stops before t = 4.5 for x > 1
# f32 tables (see the docstring).
DEBYE32_TERMS = 8      # 8 terms leave < 1e-8 (5% margin on rho) from rho = 11.6: region rho >= 12
RGAMMA32_TERMS = 14    # c_0..c_13: the rest is below 1e-10 for |z| <= 1/2
TRAPEZOID32_NODES = 20 # t up to 5: for x > 1/2 the f32 rule stops before, once terms are < e^-20

def debye_polys(n):
    def deriv(p): return [i * c for i, c in enumerate(p)][1:] or [F(0)]
    def integ(p): return [F(0)] + [c / (i + 1) for i, c in enumerate(p)]
    def mul(p, q):
        r = [F(0)] * (len(p) + len(q) - 1)
        for i, a in enumerate(p):
            for j, b in enumerate(q):
                r[i + j] += a * b
        return r
    def add(p, q):
        m = max(len(p), len(q))
        return [(p[i] if i < len(p) else 0) + (q[i] if i < len(q) else 0) for i in range(m)]
    u = [[F(1)]]
    for _ in range(n):
        uk = u[-1]
        a = mul([F(0), F(0), F(1, 2), F(0), F(-1, 2)], deriv(uk))
        b = [c / 8 for c in integ(mul([F(1), F(0), F(-5)], uk))]
        u.append(add(a, b))
    out = []
    for k in range(1, n + 1):
        p = u[k]
        out.append([p[k + 2 * j] if k + 2 * j < len(p) else F(0) for j in range(k + 1)])
    return out

def f64(x):
    """Nearest double of an mpf or Fraction, as an exact Rust/C literal."""
    v = float(mp.mpf(x.numerator) / x.denominator) if isinstance(x, F) else float(x)
    return repr(v) if v != 0 else "0.0"

def dd(x):
    hi = float(x)
    lo = float(x - mp.mpf(hi))
    return hi, lo

def eta(z):
    return mp.sqrt(1 + z * z) - mp.asinh(1 / z)

z0 = mp.findroot(eta, mp.mpf("0.66"))
eta_coeffs = mp.taylor(eta, z0, ETA_TERMS)
assert abs(eta_coeffs[0]) < mp.mpf(10) ** -70
rg = mp.taylor(lambda z: mp.rgamma(1 + z), 0, RGAMMA_TERMS)
stirling = [mp.bernoulli(2 * k) / (2 * k * (2 * k - 1)) for k in range(1, STIRLING_TERMS + 1)]
debye = debye_polys(DEBYE_TERMS + 1)

# Fewer Debye terms suffice for larger rho: K terms leave max_s |U_{K+1}(s)| / rho^(K+1), which
# must stay below 2e-17; DEBYE_RHO_MIN[K - 3] is the smallest rho where K terms do (5% margin),
# for K = 3..DEBYE_TERMS (the last one is the region boundary).
def max_abs_poly(coeffs, samples=20001):
    best = mp.mpf(0)
    for i in range(samples):
        s_ = mp.mpf(i) / (samples - 1)
        best = max(best, abs(sum(mp.mpf(c.numerator) / c.denominator * s_ ** j for j, c in enumerate(coeffs))))
    return best

debye_rho_min = []
for K in range(3, DEBYE_TERMS + 1):
    m = max_abs_poly(debye[K], 2001)
    debye_rho_min.append(float((m / mp.mpf("2e-17")) ** (mp.mpf(1) / (K + 1)) * mp.mpf("1.05")))
debye32_rho_min = []
for K in range(2, DEBYE32_TERMS + 1):
    m = max_abs_poly(debye[K], 2001)
    debye32_rho_min.append(float((m / mp.mpf("1e-8")) ** (mp.mpf(1) / (K + 1)) * mp.mpf("1.05")))
assert debye32_rho_min[-1] <= 12.0, debye32_rho_min
debye = debye[:DEBYE_TERMS]

# Window check: the Taylor remainder at |delta| = 0.3 must be below 1e-18 relative to eta's slope.
rem = max(abs(eta_coeffs[k]) * mp.mpf("0.3") ** k for k in range(ETA_TERMS - 3, ETA_TERMS + 1))
assert rem < mp.mpf("1e-18"), rem

z0hi, z0lo = dd(z0)
rgamma32_rest = sum(abs(rg[k]) * mp.mpf("0.5") ** k for k in range(RGAMMA32_TERMS, RGAMMA_TERMS + 1))
assert rgamma32_rest < mp.mpf("1e-10"), rgamma32_rest

def rust_array(name, vals, doc):
    body = ",\n".join("    " + v for v in vals)
    return f"/// {doc}\npub(crate) const {name}: [f64; {len(vals)}] = [\n{body},\n];\n"

def cuda_array(name, vals, doc):
    body = ",\n".join("    " + v for v in vals)
    return f"// {doc}\n__device__ __constant__ const double {name}[{len(vals)}] = {{\n{body},\n}};\n"

debye_flat = []
offsets = []
for coeffs in debye:
    offsets.append(len(debye_flat))
    debye_flat += [f64(c) for c in coeffs]

tables = [
    ("DEBYE_U", debye_flat, f"Debye polynomials U_1..U_{DEBYE_TERMS} in s = t^2, U_k at [DEBYE_OFFSET[k-1], +k+1), lowest power first."),
    ("ETA_TAYLOR", [f64(c) for c in eta_coeffs[1:]], f"Taylor coefficients e_1..e_{ETA_TERMS} of eta(z) at z0: eta(z0 + d) = sum e_k d^k."),
    ("RGAMMA_TAYLOR", [f64(c) for c in rg], f"1/Gamma(1+z) = sum_k c_k z^k, k = 0..{RGAMMA_TERMS}."),
    ("LGAMMA_STIRLING", [f64(c) for c in stirling], "B_2k / (2k (2k-1)), k = 1.., the Stirling series of log Gamma."),
    ("TRAPEZOID_COSH_M1", [f64(mp.cosh(mp.mpf(k) / 6) - 1) for k in range(1, TRAPEZOID_NODES + 1)], "cosh(t_k) - 1 at the trapezoid nodes t_k = k/6, k = 1.."),
    ("TRAPEZOID_EXP", [f64(mp.exp(mp.mpf(k) / 6)) for k in range(1, TRAPEZOID_NODES + 1)], "e^(t_k) at the trapezoid nodes t_k = k/6, k = 1.."),
    ("TRAPEZOID_EXP_NEG", [f64(mp.exp(-mp.mpf(k) / 6)) for k in range(1, TRAPEZOID_NODES + 1)], "e^(-t_k) at the trapezoid nodes t_k = k/6, k = 1.."),
]

header = ("Generated by scripts/gen_bessel_consts.py from the definitions (exact rationals or 80 "
          "digits): do not edit.")
rs = [f"//! {header}\n#![allow(clippy::excessive_precision, clippy::unreadable_literal, clippy::approx_constant)]\n"]
rs.append(f"/// Correction terms of the Debye expansion.\npub(crate) const DEBYE_TERMS: usize = {DEBYE_TERMS};\n")
rs.append(f"/// Start of U_k in DEBYE_U.\npub(crate) const DEBYE_OFFSET: [usize; {DEBYE_TERMS}] = {offsets};\n")
rs.append(f"/// Smallest rho at which K = 3.. Debye terms are accurate to 2e-17 (index K - 3).\npub(crate) const DEBYE_RHO_MIN: [f64; {len(debye_rho_min)}] = [{', '.join(repr(round(r, 1)) for r in debye_rho_min)}];\n")
rs.append(f"/// The zero of eta(z) = sqrt(1+z^2) - asinh(1/z), as a double-double (hi, lo).\npub(crate) const ETA_Z0: (f64, f64) = ({repr(z0hi)}, {repr(z0lo)});\n")
for name, vals, doc in tables:
    rs.append(rust_array(name, vals, doc))

cu = [f"// {header}\n#pragma once\n"]
cu.append(f"#define SK_DEBYE_TERMS {DEBYE_TERMS}\n#define SK_ETA_TERMS {ETA_TERMS}\n#define SK_RGAMMA_TERMS {RGAMMA_TERMS + 1}\n#define SK_STIRLING_TERMS {STIRLING_TERMS}\n#define SK_TRAPEZOID_NODES {TRAPEZOID_NODES}\n")
cu.append(f"// The zero of eta as a double-double.\n#define SK_ETA_Z0_HI {repr(z0hi)}\n#define SK_ETA_Z0_LO {repr(z0lo)}\n")
cu.append("// Start of U_k in SK_DEBYE_U.\n__device__ __constant__ const int SK_DEBYE_OFFSET[%d] = {%s};\n" % (DEBYE_TERMS, ", ".join(map(str, offsets))))
cu.append("// Smallest rho at which K = 3.. Debye terms are accurate to 2e-17 (index K - 3).\n__device__ __constant__ const double SK_DEBYE_RHO_MIN[%d] = {%s};\n" % (len(debye_rho_min), ", ".join(repr(round(r, 1)) for r in debye_rho_min)))
for name, vals, doc in tables:
    cu.append(cuda_array("SK_" + name, vals, doc))

def f32(x):
    """An mpf or Fraction as a C float literal (nearest double, then rounded by the compiler)."""
    v = f64(x)
    return v + "f" if ("." in v or "e" in v) else v + ".0f"

def cuda_float_array(name, vals, doc):
    body = ",\n".join("    " + v for v in vals)
    return f"// {doc}\n__device__ __constant__ const float {name}[{len(vals)}] = {{\n{body},\n}};\n"

cu.append(f"// ---- f32 tables ----\n#define SK_DEBYE32_TERMS {DEBYE32_TERMS}\n#define SK_RGAMMA32_TERMS {RGAMMA32_TERMS}\n#define SK_TRAPEZOID32_NODES {TRAPEZOID32_NODES}\n")
cu.append("// Smallest rho at which K = 2.. Debye terms are accurate to 1e-8 (index K - 2).\n__device__ __constant__ const float SK_DEBYE32_RHO_MIN[%d] = {%s};\n" % (len(debye32_rho_min), ", ".join(repr(round(r, 1)) + "f" for r in debye32_rho_min)))
debye32_flat = []
for coeffs in debye[:DEBYE32_TERMS]:
    debye32_flat += [f32(c) for c in coeffs]
for name, vals, doc in [
    ("DEBYE32_U", debye32_flat, f"SK_DEBYE_U's U_1..U_{DEBYE32_TERMS} in float (same offsets)."),
    ("RGAMMA32_TAYLOR", [f32(c) for c in rg[:RGAMMA32_TERMS]], f"1/Gamma(1+z) = sum_k c_k z^k, k = 0..{RGAMMA32_TERMS - 1}, in float."),
    ("TRAPEZOID32_COSH_M1", [f32(mp.cosh(mp.mpf(k) / 4) - 1) for k in range(1, TRAPEZOID32_NODES + 1)], "cosh(t_k) - 1 at the f32 trapezoid nodes t_k = k/4, k = 1.."),
    ("TRAPEZOID32_EXP", [f32(mp.exp(mp.mpf(k) / 4)) for k in range(1, TRAPEZOID32_NODES + 1)], "e^(t_k) at the f32 trapezoid nodes t_k = k/4, k = 1.."),
    ("TRAPEZOID32_EXP_NEG", [f32(mp.exp(-mp.mpf(k) / 4)) for k in range(1, TRAPEZOID32_NODES + 1)], "e^(-t_k) at the f32 trapezoid nodes t_k = k/4, k = 1.."),
]:
    cu.append(cuda_float_array("SK_" + name, vals, doc))

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(root, "src/bessel/consts.rs"), "w") as f:
    f.write("\n".join(rs))
with open(os.path.join(root, "kernels/bessel_consts.cuh"), "w") as f:
    f.write("\n".join(cu))
print(f"z0 = {mp.nstr(z0, 30)}; eta Taylor remainder at 0.3: {mp.nstr(rem, 3)}")
