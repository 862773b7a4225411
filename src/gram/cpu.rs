//! The f64 CPU reference of Gram iteration for dense matrices, and the exact spectral norm by
//! one-sided Jacobi SVD (Hestenes) to check it against.
//!
//! Matrices are row-major slices of m·n entries. Both functions work on the smaller side: the
//! Gram matrix is min(m, n) square.

use super::{Bound, MAX_ITERATIONS};
use crate::error::{Error, Result};

/// Checks the shape; `Ok(None)` for a matrix with a zero side (σ₁ = 0).
fn check(m: usize, n: usize, w: &[f64]) -> Result<Option<()>> {
    let len = m
        .checked_mul(n)
        .ok_or_else(|| Error::shape(format!("{m} x {n} overflows usize")))?;
    if w.len() != len {
        return Err(Error::shape(format!(
            "a {m} x {n} matrix has {len} entries, got {}",
            w.len()
        )));
    }
    Ok((len > 0).then_some(()))
}

/// The power of two nearest below max|w| (1 for a zero matrix): dividing by it is exact and puts
/// the largest entry in [1, 2), so no square over- or underflows.
fn power_of_two_scale(w: &[f64]) -> f64 {
    let max = w.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    if max == 0.0 {
        return 1.0;
    }
    // max is finite here (callers handle non-finite entries first).
    2f64.powi(max.log2().floor() as i32)
}

/// The k columns of the smaller-side view of W, each a vector of length l: the columns of W when
/// n ≤ m, else its rows (the columns of Wᵀ); scaled by 1/`scale`.
fn columns(m: usize, n: usize, w: &[f64], scale: f64) -> Vec<Vec<f64>> {
    if n <= m {
        (0..n)
            .map(|j| (0..m).map(|i| w[i * n + j] / scale).collect())
            .collect()
    } else {
        w.chunks(n)
            .map(|row| row.iter().map(|&v| v / scale).collect())
            .collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Non-finite entries decide the result alone: NaN if any is NaN, else +∞.
fn non_finite(w: &[f64]) -> Option<f64> {
    if w.iter().any(|v| v.is_nan()) {
        Some(f64::NAN)
    } else if w.iter().any(|v| v.is_infinite()) {
        Some(f64::INFINITY)
    } else {
        None
    }
}

/// A complex number (re, im): the Gram core serves real matrices and the complex per-frequency
/// blocks of convolutions alike.
type C = (f64, f64);

/// conj(a)·b
fn cdot(a: &[C], b: &[C]) -> C {
    a.iter().zip(b).fold((0.0, 0.0), |(re, im), (x, y)| {
        (re + x.0 * y.0 + x.1 * y.1, im + x.0 * y.1 - x.1 * y.0)
    })
}

fn cnorm2(a: &[C]) -> f64 {
    a.iter().map(|z| z.0 * z.0 + z.1 * z.1).sum()
}

/// The normalized Gram powers of the matrix A whose k columns are `cols` (entries of moderate
/// size, not all zero): (G_t, λ_t) for t = 1..T, G_t = (AᴴA)^{2^{t−1}} e^{−λ_t} with
/// ‖G_{t−1}‖_F = e^{…} taken out at each step, so every G_t is O(1): G₁ = AᴴA / ‖A‖_F²,
/// G_{t+1} = (G_t / ‖G_t‖_F)², λ₁ = 2 log ‖A‖_F, λ_{t+1} = 2 (λ_t + log ‖G_t‖_F).
fn gram_sequence(cols: &[Vec<C>], iterations: u32) -> Vec<(Vec<C>, f64)> {
    let k = cols.len();
    let r2 = cols.iter().map(|c| cnorm2(c)).sum::<f64>();
    let mut g = vec![(0.0, 0.0); k * k];
    for i in 0..k {
        for j in i..k {
            let v = cdot(&cols[i], &cols[j]);
            g[i * k + j] = (v.0 / r2, v.1 / r2);
            g[j * k + i] = (v.0 / r2, -v.1 / r2);
        }
    }
    let mut seq = vec![(g, r2.ln())];
    for _ in 1..iterations {
        let (g, lambda) = seq.last().expect("one step at least");
        // (G/r)², G Hermitian: (G²)_ij = Σ_l G_il G_lj, Hermitian again.
        let r2 = cnorm2(g);
        let mut next = vec![(0.0, 0.0); k * k];
        for i in 0..k {
            for j in i..k {
                let mut acc = (0.0, 0.0);
                for l in 0..k {
                    let (x, y) = (g[i * k + l], g[l * k + j]);
                    acc.0 += x.0 * y.0 - x.1 * y.1;
                    acc.1 += x.0 * y.1 + x.1 * y.0;
                }
                next[i * k + j] = (acc.0 / r2, acc.1 / r2);
                next[j * k + i] = (acc.0 / r2, -acc.1 / r2);
            }
        }
        let lambda = 2.0 * (lambda + 0.5 * r2.ln());
        seq.push((next, lambda));
    }
    seq
}

/// log ‖A‖_p, p = 2^{T+1}, from the Gram sequence: ‖A‖_p^{2^{T+1}} = ‖(AᴴA)^{2^{T−1}}‖_F², so
/// log ‖A‖_p = (log ‖G_T‖_F + λ_T) / 2^T.
fn log_schatten_of(seq: &[(Vec<C>, f64)]) -> f64 {
    let (g, lambda) = seq.last().expect("one step at least");
    (0.5 * cnorm2(g).ln() + lambda) / 2f64.powi(seq.len() as i32)
}

/// A lower bound on ‖g‖₂ for a Hermitian (nearly PSD) k × k matrix g: the larger of the column
/// bound ‖g e_j‖ and the Rayleigh quotient xᴴgx / xᴴx of x = g e_j, for j the first column of
/// largest norm. With x close to the top eigenvector the quotient is far tighter than the
/// column bound, which stops at the largest entry of the top singular vector.
fn level_lower(g: &[C], k: usize) -> f64 {
    let column = |j: usize| -> Vec<C> { (0..k).map(|i| g[i * k + j]).collect() };
    let (mut j, mut best) = (0, -1.0);
    for c in 0..k {
        let n2 = cnorm2(&column(c));
        if n2 > best {
            (j, best) = (c, n2);
        }
    }
    let x = column(j);
    // xᴴ g x = Σ_i conj(x_i) (g x)_i: real for Hermitian g.
    let gx: Vec<C> = (0..k)
        .map(|i| {
            (0..k).fold((0.0, 0.0), |acc, l| {
                let (a, b) = (g[i * k + l], x[l]);
                (acc.0 + a.0 * b.0 - a.1 * b.1, acc.1 + a.0 * b.1 + a.1 * b.0)
            })
        })
        .collect();
    let quotient = cdot(&x, &gx).0 / best;
    best.sqrt().max(quotient)
}

/// The bound of a matrix given by its k smaller-side columns, scaled by 1/`scale`.
///
/// Lower bound: σ₁^{2^T} = ‖(AᴴA)^{2^{T−1}}‖₂ ≥ [`level_lower`] of G_T times e^{λ_T}; for T = 0
/// the largest column norm of A. It is never below upper · k^{−1/2^{T+1}} (the largest of k
/// column norms is at least their RMS value).
fn bound_of(cols: &[Vec<C>], scale: f64, iterations: u32) -> Bound {
    let k = cols.len();
    let frobenius = cols.iter().map(|c| cnorm2(c)).sum::<f64>().sqrt();
    if frobenius == 0.0 {
        return Bound {
            upper: 0.0,
            lower: 0.0,
            iterations,
        };
    }
    if iterations == 0 {
        let column = cols.iter().map(|c| cnorm2(c)).fold(0.0, f64::max).sqrt();
        return Bound {
            upper: frobenius * scale,
            lower: column * scale,
            iterations,
        };
    }
    let seq = gram_sequence(cols, iterations);
    let (g, lambda) = seq.last().expect("one step at least");
    let root = 2f64.powi(iterations as i32);
    Bound {
        upper: log_schatten_of(&seq).exp() * scale,
        lower: ((level_lower(g, k).ln() + lambda) / root).exp() * scale,
        iterations,
    }
}

fn complex(cols: Vec<Vec<f64>>) -> Vec<Vec<C>> {
    cols.into_iter()
        .map(|c| c.into_iter().map(|v| (v, 0.0)).collect())
        .collect()
}

/// Gram iteration with `iterations` = T steps: the Schatten-2^{T+1} norm of W as
/// [`Bound::upper`] and the column-norm lower bound of the last Gram power as [`Bound::lower`]
/// (at least upper · min(m, n)^{−1/2^{T+1}}; see [`super`]). T = 0 gives the Frobenius norm and
/// the largest column norm. Computed in f64 with the per-step rescaling kept in log space and a
/// power-of-two prescale applied at the end, so any finite input scale is safe. Not certified
/// against rounding: the enclosure holds to a few ulp.
///
/// A zero side gives 0; a NaN entry gives NaN bounds, an infinite one +∞.
///
/// Errors: `w.len() != m·n`, T > [`MAX_ITERATIONS`].
pub fn dense_bound(m: usize, n: usize, w: &[f64], iterations: u32) -> Result<Bound> {
    check_iterations(iterations)?;
    let exact = |v: f64| Bound {
        upper: v,
        lower: v,
        iterations,
    };
    if check(m, n, w)?.is_none() {
        return Ok(exact(0.0));
    }
    if let Some(v) = non_finite(w) {
        return Ok(exact(v));
    }
    let scale = power_of_two_scale(w);
    Ok(bound_of(
        &complex(columns(m, n, w, scale)),
        scale,
        iterations,
    ))
}

fn check_gradient_iterations(iterations: u32) -> Result<()> {
    if iterations > MAX_GRADIENT_ITERATIONS {
        return Err(Error::param(
            "iterations",
            format!("{iterations} > {MAX_GRADIENT_ITERATIONS} for the gradient"),
        ));
    }
    Ok(())
}

pub(crate) fn check_iterations(iterations: u32) -> Result<()> {
    if iterations > MAX_ITERATIONS {
        return Err(Error::param(
            "iterations",
            format!("{iterations} > {MAX_ITERATIONS}"),
        ));
    }
    Ok(())
}

/// The exact spectral norm σ₁ of W by one-sided Jacobi SVD (Hestenes): plane rotations of pairs
/// of columns of the smaller-side view until every pair is orthogonal to 1e-15 relative, then
/// the largest column norm. Accurate to a few ulp for any finite scale (the input is first
/// scaled by a power of two). Cost O(sweeps · k² · l), k = min(m, n): meant for tests.
///
/// A zero side gives 0; a NaN entry NaN, an infinite one +∞.
///
/// Errors: `w.len() != m·n`.
pub fn spectral_norm_exact(m: usize, n: usize, w: &[f64]) -> Result<f64> {
    if check(m, n, w)?.is_none() {
        return Ok(0.0);
    }
    if let Some(v) = non_finite(w) {
        return Ok(v);
    }
    let scale = power_of_two_scale(w);
    let mut cols = columns(m, n, w, scale);
    let k = cols.len();
    for _sweep in 0..60 {
        let mut rotated = false;
        for i in 0..k {
            for j in i + 1..k {
                let (a, b) = (dot(&cols[i], &cols[i]), dot(&cols[j], &cols[j]));
                let c = dot(&cols[i], &cols[j]);
                if c == 0.0 || c.abs() <= 1e-15 * (a * b).sqrt() {
                    continue;
                }
                rotated = true;
                // The rotation that diagonalizes [[a, c], [c, b]] (Rutishauser's formulas).
                let zeta = (b - a) / (2.0 * c);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let cs = 1.0 / (1.0 + t * t).sqrt();
                let sn = cs * t;
                let (left, right) = cols.split_at_mut(j);
                for (x, y) in left[i].iter_mut().zip(right[0].iter_mut()) {
                    let (u, v) = (*x, *y);
                    *x = cs * u - sn * v;
                    *y = sn * u + cs * v;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let max = cols.iter().map(|c| dot(c, c)).fold(0.0f64, f64::max);
    Ok(max.sqrt() * scale)
}

/// The most iterations [`dense_bound_gradient`] accepts: its scale factor is a difference of
/// terms of size 2^{T+1}·log‖W‖_p, whose rounding grows with T (relative error about
/// 2^{T+1}·10·ε: 2e-9 at T = 20).
pub const MAX_GRADIENT_ITERATIONS: u32 = 24;

/// The bound of [`dense_bound`] and its gradient with respect to W (row-major, m × n), for
/// Lipschitz regularization: with p = 2^{T+1}, ∂‖W‖_p/∂W = W (WᵀW)^{p/2−1} / ‖W‖_p^{p−1}, formed
/// from the normalized Gram powers as W·G₁G₂…G_T·e^E (the scale e^E combines the λ_t and
/// ‖W‖_p^{p−1} in log space). T = 0 gives W/‖W‖_F. A zero matrix gets the zero subgradient; NaN
/// or infinite entries give NaN gradients.
///
/// Errors: as [`dense_bound`], and T > [`MAX_GRADIENT_ITERATIONS`].
pub fn dense_bound_gradient(
    m: usize,
    n: usize,
    w: &[f64],
    iterations: u32,
) -> Result<(Bound, Vec<f64>)> {
    check_gradient_iterations(iterations)?;
    let bound = dense_bound(m, n, w, iterations)?;
    if !bound.upper.is_finite() {
        return Ok((bound, vec![f64::NAN; w.len()]));
    }
    if bound.upper == 0.0 {
        return Ok((bound, vec![0.0; w.len()]));
    }
    if iterations == 0 {
        return Ok((bound, w.iter().map(|&v| v / bound.upper).collect()));
    }
    // The gradient is homogeneous of degree 0: compute it for A = W / scale.
    let scale = power_of_two_scale(w);
    let cols = complex(columns(m, n, w, scale));
    let g = schatten_gradient(&cols, iterations);
    let mut grad = vec![0.0; w.len()];
    for (j, col) in g.iter().enumerate() {
        for (i, z) in col.iter().enumerate() {
            if n <= m {
                grad[i * n + j] = z.0; // C = W
            } else {
                grad[j * n + i] = z.0; // C = Wᵀ
            }
        }
    }
    Ok((bound, grad))
}

/// The gradient of the Schatten-2^{T+1} norm (T ≥ 1) of the l × k matrix X whose columns are
/// `cols` (entries of moderate size, not all zero): G = X (XᴴX)^{p/2−1} / ‖X‖_p^{p−1}, so that
/// d‖X‖_p = Re Σ conj(G) dX; formed from the normalized Gram powers as X·G₁G₂…G_T·e^E (the scale
/// e^E combines the λ_t and ‖X‖_p^{p−1} in log space). Returned as columns, like `cols`.
fn schatten_gradient(cols: &[Vec<C>], iterations: u32) -> Vec<Vec<C>> {
    let k = cols.len();
    let l = cols[0].len();
    let seq = gram_sequence(cols, iterations);
    let p = 2f64.powi(iterations as i32 + 1);
    let exponent = seq.iter().map(|s| s.1).sum::<f64>() - (p - 1.0) * log_schatten_of(&seq);
    // P = G₁ G₂ … G_T (k × k).
    let mut prod = seq[0].0.clone();
    for (g, _) in &seq[1..] {
        let mut next = vec![(0.0, 0.0); k * k];
        for i in 0..k {
            for j in 0..k {
                let mut acc = (0.0, 0.0);
                for q in 0..k {
                    let (x, y) = (prod[i * k + q], g[q * k + j]);
                    acc.0 += x.0 * y.0 - x.1 * y.1;
                    acc.1 += x.0 * y.1 + x.1 * y.0;
                }
                next[i * k + j] = acc;
            }
        }
        prod = next;
    }
    // G = X P e^E: column j is Σ_q x_q P[q][j].
    let factor = exponent.exp();
    (0..k)
        .map(|j| {
            (0..l)
                .map(|i| {
                    let mut acc = (0.0, 0.0);
                    for (q, col) in cols.iter().enumerate() {
                        let (x, y) = (col[i], prod[q * k + j]);
                        acc.0 += x.0 * y.0 - x.1 * y.1;
                        acc.1 += x.0 * y.1 + x.1 * y.0;
                    }
                    (acc.0 * factor, acc.1 * factor)
                })
                .collect()
        })
        .collect()
}

// ---- convolutions, circular padding ----------------------------------------------------------

/// The shape of a convolution kernel [c_out, c_in, k, k] (row-major) on n × n inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Output channels.
    pub c_out: usize,
    /// Input channels.
    pub c_in: usize,
    /// Kernel side.
    pub k: usize,
    /// Input side (circular padding, stride 1).
    pub n: usize,
}

impl ConvShape {
    fn check(&self, kernel: &[f64]) -> Result<()> {
        let ConvShape { c_out, c_in, k, n } = *self;
        if k > n {
            return Err(Error::shape(format!(
                "a {k} x {k} kernel does not fit a {n} x {n} circular input"
            )));
        }
        let pairs = c_out.checked_mul(c_in);
        let taps = k.checked_mul(k);
        match (pairs, taps) {
            (Some(a), Some(b)) => check(a, b, kernel).map(|_| ()),
            _ => Err(Error::shape(format!(
                "a {c_out} x {c_in} x {k} x {k} kernel overflows usize"
            ))),
        }
    }

    /// The per-frequency blocks A(u, v)[o][i] = Σ_{p,q<k} K[o,i,p,q] e^{−2πi(pu + qv)/n} for
    /// u < n, v ≤ n/2 (a real kernel's blocks at −(u, v) are their conjugates: same singular
    /// values), each as the columns of its smaller side, scaled by 1/`scale`. A direct small DFT.
    fn blocks(&self, kernel: &[f64], scale: f64) -> Vec<Vec<Vec<C>>> {
        let ConvShape { c_out, c_in, k, n } = *self;
        let tau = std::f64::consts::TAU / n as f64;
        let mut out = Vec::with_capacity(n * (n / 2 + 1));
        for u in 0..n {
            for v in 0..=n / 2 {
                // Twiddles e^{−iτ(pu+qv)}, reduced mod n exactly before the angle is formed.
                let twiddle: Vec<C> = (0..k * k)
                    .map(|pq| {
                        let phase = ((pq / k) * u + (pq % k) * v) % n;
                        let a = -tau * phase as f64;
                        (a.cos(), a.sin())
                    })
                    .collect();
                let entry = |o: usize, i: usize| -> C {
                    let taps = &kernel[(o * c_in + i) * k * k..(o * c_in + i + 1) * k * k];
                    taps.iter().zip(&twiddle).fold((0.0, 0.0), |acc, (&w, t)| {
                        (acc.0 + w / scale * t.0, acc.1 + w / scale * t.1)
                    })
                };
                let cols: Vec<Vec<C>> = if c_in <= c_out {
                    (0..c_in)
                        .map(|i| (0..c_out).map(|o| entry(o, i)).collect())
                        .collect()
                } else {
                    // Columns of Aᴴ: conjugated rows of A (the Gram AAᴴ is the smaller side).
                    (0..c_out)
                        .map(|o| {
                            (0..c_in)
                                .map(|i| {
                                    let z = entry(o, i);
                                    (z.0, -z.1)
                                })
                                .collect()
                        })
                        .collect()
                };
                out.push(cols);
            }
        }
        out
    }
}

/// The Gram-iteration bound on the spectral norm of a convolution with circular padding and
/// stride 1 (Delattre et al. 2023): the operator is block-diagonalized by the 2-D DFT (Sedghi et
/// al. 2019), so σ₁ = max over frequencies of σ₁ of the c_out × c_in block there; the bound is
/// the max over blocks of their Gram-iteration bounds, and the lower bound the max of theirs.
///
/// Errors: kernel length ≠ c_out·c_in·k², k > n, T > [`MAX_ITERATIONS`]. An empty kernel gives 0,
/// NaN entries NaN, infinite ones +∞.
pub fn conv_circular_bound(shape: ConvShape, kernel: &[f64], iterations: u32) -> Result<Bound> {
    check_iterations(iterations)?;
    shape.check(kernel)?;
    let exact = |v: f64| Bound {
        upper: v,
        lower: v,
        iterations,
    };
    if kernel.is_empty() {
        return Ok(exact(0.0));
    }
    if let Some(v) = non_finite(kernel) {
        return Ok(exact(v));
    }
    let scale = power_of_two_scale(kernel);
    let mut best = exact(0.0);
    for cols in shape.blocks(kernel, scale) {
        let b = bound_of(&cols, scale, iterations);
        best.upper = best.upper.max(b.upper);
        best.lower = best.lower.max(b.lower);
    }
    Ok(best)
}

/// The exact spectral norm of the circular convolution: max over frequencies of the exact σ₁ of
/// each block (Sedghi et al. 2019), each by [`spectral_norm_exact`] of its real embedding
/// [[Re A, −Im A], [Im A, Re A]] (whose singular values are A's, each twice). For tests.
///
/// Errors, empty and non-finite kernels: as [`conv_circular_bound`].
pub fn conv_circular_exact(shape: ConvShape, kernel: &[f64]) -> Result<f64> {
    shape.check(kernel)?;
    if kernel.is_empty() {
        return Ok(0.0);
    }
    if let Some(v) = non_finite(kernel) {
        return Ok(v);
    }
    let scale = power_of_two_scale(kernel);
    let mut best: f64 = 0.0;
    for cols in shape.blocks(kernel, scale) {
        // cols: k columns of length l; the real embedding is 2l × 2k, row-major.
        let (k, l) = (cols.len(), cols[0].len());
        let mut m = vec![0.0; 4 * k * l];
        for (j, col) in cols.iter().enumerate() {
            for (i, z) in col.iter().enumerate() {
                m[i * 2 * k + j] = z.0;
                m[i * 2 * k + k + j] = -z.1;
                m[(l + i) * 2 * k + j] = z.1;
                m[(l + i) * 2 * k + k + j] = z.0;
            }
        }
        best = best.max(spectral_norm_exact(2 * l, 2 * k, &m)?);
    }
    Ok(best * scale)
}

/// The bound of [`conv_circular_bound`] and its gradient with respect to the kernel (row-major
/// [c_out, c_in, k, k]), for Lipschitz regularization. The bound is the max over frequencies f
/// of ‖A_f‖_p, so its gradient is that of the maximizing block (the first of equal ones: a
/// subgradient at ties; a real kernel's conjugate blocks are the same function of it, so the
/// half spectrum loses nothing): with `A_f = Σ_{p,q} K[·,·,p,q] ω_{pq}`,
/// `ω_{pq} = e^{−2πi(pu+qv)/n}` and `G = ∂‖A_f‖_p/∂A_f` (see `schatten_gradient`),
/// `∂bound/∂K[o,i,p,q] = Re(conj(G[o][i]) ω_{pq})`.
/// T = 0 differentiates the largest Frobenius norm the same way. A zero kernel gets the zero
/// subgradient; NaN or infinite entries NaN gradients.
///
/// Errors: as [`conv_circular_bound`], and T > [`MAX_GRADIENT_ITERATIONS`].
pub fn conv_circular_bound_gradient(
    shape: ConvShape,
    kernel: &[f64],
    iterations: u32,
) -> Result<(Bound, Vec<f64>)> {
    check_gradient_iterations(iterations)?;
    let bound = conv_circular_bound(shape, kernel, iterations)?;
    if !bound.upper.is_finite() {
        return Ok((bound, vec![f64::NAN; kernel.len()]));
    }
    if bound.upper == 0.0 {
        return Ok((bound, vec![0.0; kernel.len()]));
    }
    let ConvShape { c_out, c_in, k, n } = shape;
    let scale = power_of_two_scale(kernel);
    let blocks = shape.blocks(kernel, scale);
    // The maximizing block, by the same per-block bound as conv_circular_bound.
    let mut best = (0usize, f64::NEG_INFINITY);
    for (f, cols) in blocks.iter().enumerate() {
        let b = bound_of(cols, scale, iterations).upper;
        if b > best.1 {
            best = (f, b);
        }
    }
    let cols = &blocks[best.0];
    let g = if iterations == 0 {
        // ∂‖X‖_F/∂X = X / ‖X‖_F.
        let fro = cols.iter().map(|c| cnorm2(c)).sum::<f64>().sqrt();
        cols.iter()
            .map(|c| c.iter().map(|z| (z.0 / fro, z.1 / fro)).collect())
            .collect()
    } else {
        schatten_gradient(cols, iterations)
    };
    let (u, v) = (best.0 / (n / 2 + 1), best.0 % (n / 2 + 1));
    let tau = std::f64::consts::TAU / n as f64;
    let mut grad = vec![0.0; kernel.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            // G with respect to A[o][i]: X = A (columns i) or X = Aᴴ (columns o, conjugated).
            let ga = if c_in <= c_out {
                g[i][o]
            } else {
                let z = g[o][i];
                (z.0, -z.1)
            };
            for pq in 0..k * k {
                let phase = ((pq / k) * u + (pq % k) * v) % n;
                let (sn, cs) = (-tau * phase as f64).sin_cos();
                // Re(conj(ga) ω)
                grad[(o * c_in + i) * k * k + pq] = ga.0 * cs + ga.1 * sn;
            }
        }
    }
    Ok((bound, grad))
}
