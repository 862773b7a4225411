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

fn frobenius(g: &[f64]) -> f64 {
    dot(g, g).sqrt()
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

/// Gram iteration with `iterations` = T steps: the Schatten-2^{T+1} norm of W as
/// [`Bound::upper`] and upper · min(m, n)^{−1/2^{T+1}} as [`Bound::lower`] (see [`super`]). T = 0
/// gives the Frobenius norm. Computed in f64 with the per-step rescaling kept in log space, so
/// any finite input scale is safe. Not certified against rounding: the enclosure holds to a few
/// ulp.
///
/// A zero side gives 0; a NaN entry gives NaN bounds, an infinite one +∞.
///
/// Errors: `w.len() != m·n`, T > [`MAX_ITERATIONS`].
pub fn dense_bound(m: usize, n: usize, w: &[f64], iterations: u32) -> Result<Bound> {
    if iterations > MAX_ITERATIONS {
        return Err(Error::param(
            "iterations",
            format!("{iterations} > {MAX_ITERATIONS}"),
        ));
    }
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
    let cols = columns(m, n, w, scale);
    let k = cols.len();
    if cols.iter().all(|c| c.iter().all(|&v| v == 0.0)) {
        return Ok(exact(0.0));
    }
    // log of the factors r_t taken out so far (G_t ∝ (AᴴA)^{2^{t−1}}, A = W/scale). The power of
    // two `scale` is applied at the end: doubling its (possibly huge) log T times would cost
    // |log scale|·ε in the result.
    let mut log_scale = 0.0;
    let mut g: Vec<f64>; // k × k, row-major
    if iterations == 0 {
        let f = cols.iter().map(|c| dot(c, c)).sum::<f64>().sqrt() * scale;
        return Ok(Bound {
            upper: f,
            lower: f / (k as f64).sqrt(),
            iterations,
        });
    }
    {
        // First step: G₁ = (A/r)ᴴ(A/r), A the k columns.
        let r = cols.iter().map(|c| dot(c, c)).sum::<f64>().sqrt();
        let r2 = r * r;
        g = vec![0.0; k * k];
        for i in 0..k {
            for j in i..k {
                let v = dot(&cols[i], &cols[j]) / r2;
                g[i * k + j] = v;
                g[j * k + i] = v;
            }
        }
        log_scale = 2.0 * (log_scale + r.ln());
    }
    for _ in 1..iterations {
        // G ← (G/r)ᴴ(G/r) = (G/r)², G symmetric.
        let r = frobenius(&g);
        let r2 = r * r;
        let mut next = vec![0.0; k * k];
        for i in 0..k {
            for j in i..k {
                let v = dot(&g[i * k..(i + 1) * k], &g[j * k..(j + 1) * k]) / r2;
                next[i * k + j] = v;
                next[j * k + i] = v;
            }
        }
        g = next;
        log_scale = 2.0 * (log_scale + r.ln());
    }
    let p_half = 2f64.powi(iterations as i32); // 2^T
    let upper = ((frobenius(&g).ln() + log_scale) / p_half).exp() * scale;
    let lower = upper * (k as f64).powf(-0.5 / p_half);
    Ok(Bound {
        upper,
        lower,
        iterations,
    })
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
