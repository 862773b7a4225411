//! The f64 CPU reference of the family: feature maps and their gradients, kernel estimates,
//! FAVOR+ attention (written as the direct quadratic sum over key positions, not the GPU's
//! factorized prefix form) with its gradients, exact softmax attention, and the exact MSE of
//! the positive-feature estimators.

use super::projection::{Coupling, Projection};
use super::{AttentionShape, Favor, FeatureMap, KernelKind, Stabilizer};
use crate::bessel::cpu::{lgamma, log_i};
use crate::error::{Error, Result};

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Features of `rows` inputs (rows x d, row-major) and each row's shift.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// φ, rows x m row-major.
    pub phi: Vec<f64>,
    /// The shift subtracted from each row's exponents.
    pub shift: Vec<f64>,
}

fn check_rows(name: &'static str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::shape(format!(
            "`{name}` has {len} elements, expected {rows} x {cols}"
        )));
    }
    Ok(())
}

/// Each row's exponents a_ri = s w_i·x_r − c s²|x_r|² (rows x m), s the input scale.
fn exponents(map: &FeatureMap, w: &Projection, x: &[f64], rows: usize) -> Vec<f64> {
    let (m, d) = (w.features, w.dim);
    let (s, c) = (map.input_scale, map.kernel.norm_coefficient());
    let mut a = vec![0.0; rows * m];
    for r in 0..rows {
        let xr = &x[r * d..(r + 1) * d];
        let norm2 = s * s * dot(xr, xr);
        for i in 0..m {
            a[r * m + i] = s * dot(w.row(i), xr) - c * norm2;
        }
    }
    a
}

/// φ(x)_i = m^{−1/2}(exp(a_i − shift) + eps) for every row (see the module documentation of
/// [`super`]). Errors: `x` not rows x d, a bad map (eps, scale, group size).
pub fn features(map: &FeatureMap, w: &Projection, x: &[f64], rows: usize) -> Result<Features> {
    check_rows("x", x.len(), rows, w.dim)?;
    map.validate(rows)?;
    let m = w.features;
    let a = exponents(map, w, x, rows);
    // f64::max ignores NaN, so a NaN row does not spoil its group's shift.
    let row_max: Vec<f64> = (0..rows)
        .map(|r| {
            let row = &a[r * m..(r + 1) * m];
            if row.iter().any(|v| v.is_nan()) {
                f64::NAN
            } else {
                row.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            }
        })
        .collect();
    let shift: Vec<f64> = match map.stabilizer {
        Stabilizer::None => vec![0.0; rows],
        Stabilizer::Row => row_max.clone(),
        Stabilizer::Group { rows: g } => row_max
            .chunks(g)
            .flat_map(|grp| {
                let mx = grp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                std::iter::repeat_n(mx, g)
            })
            .collect(),
    };
    let scale = (m as f64).powf(-0.5);
    let phi = (0..rows * m)
        .map(|k| scale * ((a[k] - shift[k / m]).exp() + map.eps))
        .collect();
    Ok(Features { phi, shift })
}

/// The gradient of Σ dφ·φ with respect to x, the shift held constant:
/// dx_r = Σ_i dφ_ri m^{−1/2} exp(a_ri − shift_r) (s w_i − 2 c s² x_r).
pub fn features_backward(
    map: &FeatureMap,
    w: &Projection,
    x: &[f64],
    rows: usize,
    dphi: &[f64],
) -> Result<Vec<f64>> {
    let (m, d) = (w.features, w.dim);
    check_rows("dphi", dphi.len(), rows, m)?;
    let f = features(map, w, x, rows)?;
    let (s, c) = (map.input_scale, map.kernel.norm_coefficient());
    let scale = (m as f64).powf(-0.5);
    let mut dx = vec![0.0; rows * d];
    for r in 0..rows {
        let xr = &x[r * d..(r + 1) * d];
        let dxr = &mut dx[r * d..(r + 1) * d];
        for i in 0..m {
            // φ without its eps part: the part that depends on x.
            let e = f.phi[r * m + i] - scale * map.eps;
            let g = dphi[r * m + i] * e;
            for (k, o) in dxr.iter_mut().enumerate() {
                *o += g * (s * w.row(i)[k] - 2.0 * c * s * s * xr[k]);
            }
        }
    }
    Ok(dx)
}

/// The unbiased estimate K̂(x, y) = (1/m) Σ_i exp(w_i·(x+y) − c(|x|²+|y|²)), computed without
/// forming φ (so no overflow for moderate inputs).
pub fn estimate(kernel: KernelKind, w: &Projection, x: &[f64], y: &[f64]) -> f64 {
    let c = kernel.norm_coefficient();
    let v: Vec<f64> = x.iter().zip(y).map(|(a, b)| a + b).collect();
    let base = -c * (dot(x, x) + dot(y, y));
    (0..w.features)
        .map(|i| (dot(w.row(i), &v) + base).exp())
        .sum::<f64>()
        / w.features as f64
}

/// K̂ for a batch of `pairs` pairs (x and y both pairs x d, row-major): K̂_p = (1/m) Σ_i
/// exp(a_pi), a_pi = w_i·(x_p + y_p) − c(|x_p|² + |y_p|²), summed as exp(max_i a_pi) Σ_i
/// exp(a_pi − max) so that no term overflows or underflows before the result does.
/// Errors: x or y not pairs x d.
pub fn estimate_pairs(
    kernel: KernelKind,
    w: &Projection,
    x: &[f64],
    y: &[f64],
    pairs: usize,
) -> Result<Vec<f64>> {
    let d = w.dim;
    check_rows("x", x.len(), pairs, d)?;
    check_rows("y", y.len(), pairs, d)?;
    let c = kernel.norm_coefficient();
    Ok((0..pairs)
        .map(|p| {
            let (xp, yp) = (&x[p * d..(p + 1) * d], &y[p * d..(p + 1) * d]);
            let v: Vec<f64> = xp.iter().zip(yp).map(|(a, b)| a + b).collect();
            let base = -c * (dot(xp, xp) + dot(yp, yp));
            let a: Vec<f64> = (0..w.features).map(|i| dot(w.row(i), &v) + base).collect();
            let top = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if !top.is_finite() {
                return top.exp();
            }
            let sum: f64 = a.iter().map(|ai| (ai - top).exp()).sum();
            (top + (sum / w.features as f64).ln()).exp()
        })
        .collect())
}

fn check_attention(
    shape: &AttentionShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    w: &Projection,
) -> Result<()> {
    let rows = shape.heads * shape.len;
    if rows == 0 {
        return Err(Error::shape("zero heads or zero length"));
    }
    if w.dim != shape.dim {
        return Err(Error::shape(format!(
            "W has {} columns for head dimension {}",
            w.dim, shape.dim
        )));
    }
    check_rows("q", q.len(), rows, shape.dim)?;
    check_rows("k", k.len(), rows, shape.dim)?;
    check_rows("v", v.len(), rows, shape.value_dim)
}

/// The (masked) attention weights A_ij = φ(q_i)·φ(k_j) of one head, len x len.
fn favor_weights(fq: &[f64], fk: &[f64], len: usize, m: usize, causal: bool) -> Vec<f64> {
    let mut a = vec![0.0; len * len];
    for i in 0..len {
        let last = if causal { i + 1 } else { len };
        for j in 0..last {
            a[i * len + j] = dot(&fq[i * m..(i + 1) * m], &fk[j * m..(j + 1) * m]);
        }
    }
    a
}

/// FAVOR+ attention, out_i = Σ_j A_ij v_j / (Σ_j A_ij + guard) over j ≤ i (causal) or all j,
/// A_ij = φ(q_i)·φ(k_j); [heads, len, value_dim].
pub fn favor_attention(
    opts: &Favor,
    shape: &AttentionShape,
    w: &Projection,
    q: &[f64],
    k: &[f64],
    v: &[f64],
) -> Result<Vec<f64>> {
    check_attention(shape, q, k, v, w)?;
    let (l, dv, m) = (shape.len, shape.value_dim, w.features);
    let rows = shape.heads * l;
    let fq = features(&opts.query_map(), w, q, rows)?.phi;
    let fk = features(&opts.key_map(l), w, k, rows)?.phi;
    let mut out = vec![0.0; rows * dv];
    for h in 0..shape.heads {
        let a = favor_weights(
            &fq[h * l * m..(h + 1) * l * m],
            &fk[h * l * m..(h + 1) * l * m],
            l,
            m,
            opts.causal,
        );
        for i in 0..l {
            let den = a[i * l..(i + 1) * l].iter().sum::<f64>() + opts.guard;
            let o = &mut out[(h * l + i) * dv..(h * l + i + 1) * dv];
            for j in 0..l {
                let vj = &v[(h * l + j) * dv..(h * l + j + 1) * dv];
                o.iter_mut()
                    .zip(vj)
                    .for_each(|(o, &x)| *o += a[i * l + j] * x);
            }
            o.iter_mut().for_each(|o| *o /= den);
        }
    }
    Ok(out)
}

/// Gradients of Σ dout·out for [`favor_attention`] with respect to q, k and v (the shifts held
/// constant). With N_i = Σ_j A_ij v_j and D_i = Σ_j A_ij + guard: dA_ij = (dout_i·v_j −
/// dout_i·out_i)/D_i, dv_j = Σ_i A_ij dout_i/D_i, dφ(q_i) = Σ_j dA_ij φ(k_j), dφ(k_j) =
/// Σ_i dA_ij φ(q_i), then [`features_backward`].
pub fn favor_attention_backward(
    opts: &Favor,
    shape: &AttentionShape,
    w: &Projection,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dout: &[f64],
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    check_attention(shape, q, k, v, w)?;
    let (l, dv, m) = (shape.len, shape.value_dim, w.features);
    let rows = shape.heads * l;
    check_rows("dout", dout.len(), rows, dv)?;
    let fq = features(&opts.query_map(), w, q, rows)?.phi;
    let fk = features(&opts.key_map(l), w, k, rows)?.phi;
    let out = favor_attention(opts, shape, w, q, k, v)?;
    let (mut dfq, mut dfk, mut dvv) = (
        vec![0.0; rows * m],
        vec![0.0; rows * m],
        vec![0.0; rows * dv],
    );
    for h in 0..shape.heads {
        let base = h * l;
        let a = favor_weights(
            &fq[base * m..(base + l) * m],
            &fk[base * m..(base + l) * m],
            l,
            m,
            opts.causal,
        );
        for i in 0..l {
            let den = a[i * l..(i + 1) * l].iter().sum::<f64>() + opts.guard;
            let di = &dout[(base + i) * dv..(base + i + 1) * dv];
            let oi = &out[(base + i) * dv..(base + i + 1) * dv];
            let d_do = dot(di, oi);
            let last = if opts.causal { i + 1 } else { l };
            for j in 0..last {
                let vj = &v[(base + j) * dv..(base + j + 1) * dv];
                let da = (dot(di, vj) - d_do) / den;
                for t in 0..m {
                    dfq[(base + i) * m + t] += da * fk[(base + j) * m + t];
                    dfk[(base + j) * m + t] += da * fq[(base + i) * m + t];
                }
                let aij = a[i * l + j] / den;
                dvv[(base + j) * dv..(base + j + 1) * dv]
                    .iter_mut()
                    .zip(di)
                    .for_each(|(o, &g)| *o += aij * g);
            }
        }
    }
    let dq = features_backward(&opts.query_map(), w, q, rows, &dfq)?;
    let dk = features_backward(&opts.key_map(l), w, k, rows, &dfk)?;
    Ok((dq, dk, dvv))
}

/// Exact softmax attention, out_i = Σ_j exp(s q_i·k_j) v_j / Σ_j exp(s q_i·k_j) over j ≤ i
/// (causal) or all j, with s = `scale` (1/√dim for the standard form).
pub fn softmax_attention(
    shape: &AttentionShape,
    scale: f64,
    causal: bool,
    q: &[f64],
    k: &[f64],
    v: &[f64],
) -> Result<Vec<f64>> {
    let (l, d, dv) = (shape.len, shape.dim, shape.value_dim);
    let rows = shape.heads * l;
    check_rows("q", q.len(), rows, d)?;
    check_rows("k", k.len(), rows, d)?;
    check_rows("v", v.len(), rows, dv)?;
    let mut out = vec![0.0; rows * dv];
    for h in 0..shape.heads {
        for i in 0..l {
            let qi = &q[(h * l + i) * d..(h * l + i + 1) * d];
            let last = if causal { i + 1 } else { l };
            let logits: Vec<f64> = (0..last)
                .map(|j| scale * dot(qi, &k[(h * l + j) * d..(h * l + j + 1) * d]))
                .collect();
            let mx = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = logits.iter().map(|z| (z - mx).exp()).collect();
            let total: f64 = p.iter().sum();
            let o = &mut out[(h * l + i) * dv..(h * l + i + 1) * dv];
            for (j, pj) in p.iter().enumerate() {
                let vj = &v[(h * l + j) * dv..(h * l + j + 1) * dv];
                o.iter_mut()
                    .zip(vj)
                    .for_each(|(o, &x)| *o += pj / total * x);
            }
        }
    }
    Ok(out)
}

// ---- exact MSE of the estimators ----------------------------------------------------------

/// The exact mean squared error of K̂(x, y) for W drawn by `coupling` with a Haar rotation
/// (Reid et al. 2023): with v = x + y, C = exp(−c(|x|²+|y|²)) and K the exact kernel,
/// MSE = (1/m²)[m Var₁ + Σ_blocks b(b−1) Pair(θ)], Var₁ = K²(exp|v|² − 1),
/// Pair(θ) = C² E_{a,b∼χ_d}[₀F₁(; d/2; |v|²(a²+b²+2ab cos θ)/4)] − K², where cos θ is 0 (ORF),
/// −1/(d−1) (simplex) or −1/d (full simplex) and b the rows of each block (the last one
/// truncated). The double expectation is computed by Gauss-Legendre quadrature on panels.
/// Returns None for [`Coupling::SimplexPlus`], whose directions depend on the norms.
pub fn exact_mse(
    kernel: KernelKind,
    coupling: Coupling,
    m: usize,
    x: &[f64],
    y: &[f64],
) -> Option<f64> {
    let d = x.len();
    let k = kernel.exact(x, y);
    let v2: f64 = x.iter().zip(y).map(|(a, b)| (a + b).powi(2)).sum();
    let var1 = k * k * v2.exp_m1();
    let (block, cos) = match coupling {
        Coupling::Iid => (1, 0.0),
        Coupling::Orthogonal => (d, 0.0),
        Coupling::Simplex => (d, -1.0 / (d as f64 - 1.0)),
        Coupling::FullSimplex => (d + 1, -1.0 / d as f64),
        Coupling::SimplexPlus => return None,
    };
    let pairs: usize = (0..m)
        .step_by(block)
        .map(|start| {
            let b = block.min(m - start);
            b * (b - 1)
        })
        .sum();
    let pair = if pairs == 0 {
        0.0
    } else {
        let c = kernel.norm_coefficient();
        let log_c = -c * (dot(x, x) + dot(y, y));
        pair_covariance(d, v2, cos, log_c, k)
    };
    let mf = m as f64;
    Some((mf * var1 + pairs as f64 * pair) / (mf * mf))
}

/// log ₀F₁(; β; z) = log Γ(β) + (1−β)/2 log z + log I_{β−1}(2√z), and 0 at z = 0.
fn log_hyp0f1(beta: f64, z: f64) -> f64 {
    if z == 0.0 {
        0.0
    } else {
        lgamma(beta) + 0.5 * (1.0 - beta) * z.ln() + log_i(beta - 1.0, 2.0 * z.sqrt())
    }
}

/// Pair(θ) = C² E[₀F₁(; d/2; |v|²ρ²/4)] − K², ρ² = a² + b² + 2ab cos θ, a, b ∼ χ_d.
fn pair_covariance(d: usize, v2: f64, cos: f64, log_c: f64, k: f64) -> f64 {
    let df = d as f64;
    let log_norm = -(0.5 * df - 1.0) * std::f64::consts::LN_2 - lgamma(0.5 * df);
    // The integrand is a chi_d density tilted by at most exp(2|v| a); its mass lies well
    // inside [max(0, √d − 12), √d + 4|v| + 12].
    let lo = (df.sqrt() - 12.0).max(0.0);
    let hi = df.sqrt() + 4.0 * v2.sqrt() + 12.0;
    let (nodes, weights) = gauss_legendre_panels(lo, hi, 40, 12);
    let log_density: Vec<f64> = nodes
        .iter()
        .map(|&a| {
            if a == 0.0 {
                f64::NEG_INFINITY
            } else {
                (df - 1.0) * a.ln() - 0.5 * a * a + log_norm
            }
        })
        .collect();
    let mut total = 0.0;
    for (i, &a) in nodes.iter().enumerate() {
        for (j, &b) in nodes.iter().enumerate() {
            let rho2 = (a * a + b * b + 2.0 * a * b * cos).max(0.0);
            let log_f = log_density[i] + log_density[j] + log_hyp0f1(0.5 * df, 0.25 * v2 * rho2);
            total += weights[i] * weights[j] * (2.0 * log_c + log_f).exp();
        }
    }
    total - k * k
}

/// Nodes and weights of `panels` equal panels of `order`-point Gauss-Legendre on [lo, hi].
fn gauss_legendre_panels(lo: f64, hi: f64, panels: usize, order: usize) -> (Vec<f64>, Vec<f64>) {
    let (t, wt) = gauss_legendre(order);
    let h = (hi - lo) / panels as f64;
    let mut nodes = Vec::with_capacity(panels * order);
    let mut weights = Vec::with_capacity(panels * order);
    for p in 0..panels {
        let mid = lo + (p as f64 + 0.5) * h;
        for (ti, wi) in t.iter().zip(&wt) {
            nodes.push(mid + 0.5 * h * ti);
            weights.push(0.5 * h * wi);
        }
    }
    (nodes, weights)
}

/// n-point Gauss-Legendre nodes and weights on [−1, 1], by Newton's method on P_n from the
/// Chebyshev-like initial guesses cos(π(i − 1/4)/(n + 1/2)).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    for i in 0..n {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            // P_n(x) and P_n'(x) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let kf = k as f64;
                let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 0 { 1.0 } else { p1 };
            let pn1 = if n == 0 { 0.0 } else { p0 };
            dp = n as f64 * (x * pn - pn1) / (x * x - 1.0);
            let dx = pn / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        nodes[i] = x;
        weights[i] = 2.0 / ((1.0 - x * x) * dp * dp);
    }
    (nodes, weights)
}
