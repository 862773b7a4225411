//! The f64 reference for the hypersphere operations, written independently of the kernels.
//!
//! Everything here is plain sequential f64 on row-major, contiguous `rows × cols` matrices. It is
//! what the GPU results are tested against, so it is derived separately: a normalization is
//! written as N(x) = x / d(n) with n = ‖x‖₂ and d the convention's denominator (d = 1/r in the
//! notation of [`Eps`]), and its backward is the chain rule through d(n), not the kernels'
//! r·(g − c·ŷ) coefficient form. Norms are computed by [`norm2`], which scales like BLAS `nrm2`,
//! so rows with entries anywhere in f64's finite range (f32/bf16 data near 1e38 or 1e-40
//! included) give correct results.
//!
//! # Conventions at the edges
//!
//! - A zero row (or group) gives 0 for `Clamp`, `Add` and `Inside` with eps > 0, and NaN for
//!   `None`. With eps = 0 every convention is `None` (d(0) = 0), so a zero row gives NaN there too.
//! - `Clamp` at the tie n == eps takes the normalizing branch d = n (torch's `clamp_min` passes
//!   the gradient where n ≥ eps); n < eps is the constant branch d = eps.
//! - NaN and infinity propagate through their own row only: a NaN makes the whole row (group)
//!   NaN, an infinity gives NaN at its position and 0 elsewhere in the forward, NaN throughout in
//!   the backward. Column sums (`dscale`, `dp`) add every row, so they inherit a NaN row.
//!
//! # Errors
//!
//! Every function checks its arguments before computing anything and returns
//! [`Error::InvalidShape`] for a zero dimension, a buffer whose length is not exactly its shape's
//! (`rows * cols`, `cols` for a scale, `cols` or 1 for `p`), or a group that does not divide
//! `cols`; [`Error::InvalidParameter`] for an eps (or lerp constant c) that [`Eps::validate`]
//! (or [`LerpNormalize`]'s check) rejects; [`Error::TooLarge`] if `rows * cols` overflows `usize`.
//! Nothing panics on bad input.

use super::{Axis, Eps, LerpNormalize, Normalize, Projection};
use crate::error::{Error, Result};

/// Euclidean norm ‖v‖₂ without overflow or underflow for any finite input.
///
/// The entries are scaled by the largest magnitude before squaring (as BLAS `nrm2` does), so
/// `[3e300, 4e300]` gives 5e300 and `[3e-300, 4e-300]` gives 5e-300 where a plain sum of
/// squares would give infinity or 0. An empty slice has norm 0. Any NaN gives NaN; otherwise
/// any infinity gives +∞.
pub fn norm2(v: &[f64]) -> f64 {
    let mut amax = 0.0_f64;
    for &x in v {
        let a = x.abs();
        if a.is_nan() {
            return f64::NAN;
        }
        amax = amax.max(a);
    }
    // All zero (or empty), or an infinity: the norm is amax itself, and scaling would give 0/0.
    if amax == 0.0 || amax.is_infinite() {
        return amax;
    }
    let ssq: f64 = v.iter().map(|&x| (x / amax) * (x / amax)).sum();
    amax * ssq.sqrt()
}

/// The denominator d(n) of N(x) = x / d(n) for a segment of norm n, and its derivative d′(n).
///
/// | convention | d(n) | d′(n) |
/// |---|---|---|
/// | `None` | n | 1 |
/// | `Clamp(eps)` | n if n ≥ eps, else eps | 1, else 0 |
/// | `Add(eps)` | n + eps | 1 |
/// | `Inside(eps)` | √(n² + eps) | n / d |
fn denominator(eps: Eps, n: f64) -> (f64, f64) {
    match eps {
        Eps::None => (n, 1.0),
        Eps::Clamp(e) => {
            let e = f64::from(e);
            // A comparison rather than `n.max(e)`: `max` ignores NaN, which would turn a NaN
            // row into finite numbers. NaN < e is false, so a NaN row stays NaN.
            if n < e { (e, 0.0) } else { (n, 1.0) }
        }
        Eps::Add(e) => (n + f64::from(e), 1.0),
        Eps::Inside(e) => {
            // √(n² + eps) as hypot(n, √eps): n² alone overflows for n above ~1e154.
            let d = n.hypot(f64::from(e).sqrt());
            (d, n / d)
        }
    }
}

/// Normalizes one segment in place: v ← v / d(‖v‖).
///
/// Dividing by d (rather than multiplying by r = 1/d) keeps every quotient at most 1 in
/// magnitude, since |vᵢ| ≤ n ≤ d, so it neither overflows nor needs 1/d to be representable.
fn normalize_in_place(eps: Eps, v: &mut [f64]) {
    let (d, _) = denominator(eps, norm2(v));
    for x in v {
        *x /= d;
    }
}

/// The vector-Jacobian product of one segment: dx = (∂N/∂x)ᵀ g for N(x) = x / d(n).
///
/// With x̂ = x / n = ∂n/∂x, the quotient rule gives
///
/// ∂N/∂x = I / d − x d′(n) x̂ᵀ / d² = I / d − (n d′ / d²) x̂ x̂ᵀ,
///
/// which is symmetric, so dx = g / d − (n/d)(d′/d) ⟨x̂, g⟩ x̂. The radial coefficient is formed
/// as (n/d)·(d′/d), with n/d ≤ 1, so it stays finite for huge and tiny n alike.
fn normalize_vjp(eps: Eps, x: &[f64], g: &[f64], dx: &mut [f64]) {
    let n = norm2(x);
    let (d, d_prime) = denominator(eps, n);
    let radial = -(n / d) * (d_prime / d);
    if radial == 0.0 {
        // d is constant here (Clamp below eps) or n = 0 with d(0) > 0 (Add, Inside), where the
        // radial part vanishes in the limit and x̂ would be 0/0. (For None at n = 0 the
        // coefficient is NaN, not 0, and the row comes out NaN as documented.)
        for (dx, &g) in dx.iter_mut().zip(g) {
            *dx = g / d;
        }
        return;
    }
    let xhat_dot_g: f64 = x.iter().zip(g).map(|(&x, &g)| (x / n) * g).sum();
    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
        *dx = g / d + radial * xhat_dot_g * (x / n);
    }
}

/// Normalizes each `seg`-element segment of a copy of `x` (no scale).
fn normalize_segments(eps: Eps, seg: usize, x: &[f64]) -> Vec<f64> {
    let mut y = x.to_vec();
    for s in y.chunks_exact_mut(seg) {
        normalize_in_place(eps, s);
    }
    y
}

/// `rows * cols`, checked: an error for a zero dimension or a product that overflows.
fn matrix_len(rows: usize, cols: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Err(Error::shape(format!(
            "a {rows} x {cols} matrix has no elements"
        )));
    }
    rows.checked_mul(cols)
        .ok_or_else(|| Error::TooLarge(format!("{rows} x {cols} elements overflow usize")))
}

/// Checks that the buffer `name` holds exactly `len` elements.
fn check_len(name: &str, buf: &[f64], len: usize) -> Result<()> {
    if buf.len() != len {
        return Err(Error::shape(format!(
            "`{name}` holds {} elements, its shape needs {len}",
            buf.len()
        )));
    }
    Ok(())
}

/// Validates a [`Normalize`] call and returns the segment length.
fn check_normalize(
    op: &Normalize,
    rows: usize,
    cols: usize,
    x: &[f64],
    scale: Option<&[f64]>,
) -> Result<usize> {
    op.eps.validate()?;
    let len = matrix_len(rows, cols)?;
    let seg = op.segment(cols)?;
    check_len("x", x, len)?;
    if let Some(s) = scale {
        check_len("scale", s, cols)?;
    }
    Ok(seg)
}

/// Row (or group) normalization y = s ⊙ N(x) of a `rows × cols` matrix.
///
/// Each row, or with `op.group = Some(g)` each run of g consecutive channels of a row, is
/// normalized separately: N(x) = x · r with r given by `op.eps` (see [`Eps`]). The optional
/// scale s has `cols` entries and multiplies channel c of every row.
///
/// Zero segments give 0 (NaN under `Eps::None` or eps = 0); a NaN or infinity affects its own
/// segment only (see the module docs).
///
/// # Errors
///
/// [`Error::InvalidShape`] if `rows` or `cols` is 0, `x.len() != rows * cols`, the scale does
/// not have `cols` entries, or the group is 0 or does not divide `cols`;
/// [`Error::InvalidParameter`] if eps is negative, non-finite or above 1e30.
pub fn normalize_forward(
    op: &Normalize,
    rows: usize,
    cols: usize,
    x: &[f64],
    scale: Option<&[f64]>,
) -> Result<Vec<f64>> {
    let seg = check_normalize(op, rows, cols, x, scale)?;
    let mut y = normalize_segments(op.eps, seg, x);
    if let Some(s) = scale {
        for row in y.chunks_exact_mut(cols) {
            for (y, &s) in row.iter_mut().zip(s) {
                *y *= s;
            }
        }
    }
    Ok(y)
}

/// Gradients of [`normalize_backward`].
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizeGrads {
    /// dL/dx, `rows * cols` elements.
    pub dx: Vec<f64>,
    /// dL/ds, `cols` elements; present exactly when a scale was given.
    pub dscale: Option<Vec<f64>>,
}

/// Backward of [`normalize_forward`]: given dy = dL/dy for y = s ⊙ N(x), returns
///
/// - dx = (∂N/∂x)ᵀ (s ⊙ dy), segment by segment. With n = ‖x‖ and N(x) = x / d(n)
///   (d = 1/r: n, max(n, eps), n + eps or √(n² + eps)), this is
///   dx = g/d − (n d′(n)/d²) ⟨x̂, g⟩ x̂ with g = s ⊙ dy and x̂ = x/n. It agrees with the
///   formulas in [`Eps`]: `Clamp` below eps gives g/eps, `Add` at n = 0 gives g/eps (the limit),
///   `Inside` at n = 0 gives g/√eps, `None` at n = 0 gives NaN.
/// - dscale\[c\] = Σ_rows dy\[row\]\[c\] · N(x)\[row\]\[c\], summed in row order, when a scale is
///   given.
///
/// # Errors
///
/// As [`normalize_forward`], and [`Error::InvalidShape`] if `dy.len() != rows * cols`.
pub fn normalize_backward(
    op: &Normalize,
    rows: usize,
    cols: usize,
    x: &[f64],
    scale: Option<&[f64]>,
    dy: &[f64],
) -> Result<NormalizeGrads> {
    let seg = check_normalize(op, rows, cols, x, scale)?;
    check_len("dy", dy, x.len())?;

    // g = s ⊙ dy: the gradient arriving at N(x).
    let mut g = dy.to_vec();
    if let Some(s) = scale {
        for row in g.chunks_exact_mut(cols) {
            for (g, &s) in row.iter_mut().zip(s) {
                *g *= s;
            }
        }
    }

    let mut dx = vec![0.0; x.len()];
    for ((x, g), dx) in x
        .chunks_exact(seg)
        .zip(g.chunks_exact(seg))
        .zip(dx.chunks_exact_mut(seg))
    {
        normalize_vjp(op.eps, x, g, dx);
    }

    let dscale = scale.map(|_| {
        let yhat = normalize_segments(op.eps, seg, x);
        let mut ds = vec![0.0; cols];
        for (yhat, dy) in yhat.chunks_exact(cols).zip(dy.chunks_exact(cols)) {
            for ((ds, &yhat), &dy) in ds.iter_mut().zip(yhat).zip(dy) {
                *ds += dy * yhat;
            }
        }
        ds
    });

    Ok(NormalizeGrads { dx, dscale })
}

/// Validates a [`LerpNormalize`] call.
fn check_lerp(
    op: &LerpNormalize,
    rows: usize,
    cols: usize,
    h: &[f64],
    u: &[f64],
    p: &[f64],
) -> Result<()> {
    op.validate()?;
    let len = matrix_len(rows, cols)?;
    check_len("h", h, len)?;
    check_len("u", u, len)?;
    if p.len() != cols && p.len() != 1 {
        return Err(Error::shape(format!(
            "`p` holds {} elements: it must have one per channel ({cols}) or be a scalar (1)",
            p.len()
        )));
    }
    Ok(())
}

/// The interpolation weight of channel `col`: α = c·p or |c·p|, and dα/dp there.
fn alpha(op: &LerpNormalize, p: &[f64], col: usize) -> (f64, f64) {
    let c = f64::from(op.c);
    // A scalar p is broadcast to every channel.
    let p = if p.len() == 1 { p[0] } else { p[col] };
    let cp = c * p;
    if op.abs_alpha {
        // d|cp|/dp = c·sign(cp), with sign(0) = 0 as torch defines it (f64::signum(0) is 1).
        let sign = if cp == 0.0 { 0.0 } else { cp.signum() };
        (cp.abs(), c * sign)
    } else {
        (cp, c)
    }
}

/// One row's forward intermediates: a, b = N(u) and z = a + α ⊙ (b − a).
struct LerpRow {
    a: Vec<f64>,
    b: Vec<f64>,
    z: Vec<f64>,
}

impl LerpRow {
    fn new(op: &LerpNormalize, h: &[f64], u: &[f64], p: &[f64]) -> Self {
        let mut a = h.to_vec();
        if op.renorm_h {
            normalize_in_place(op.eps, &mut a);
        }
        let mut b = u.to_vec();
        normalize_in_place(op.eps, &mut b);
        let z = (0..h.len())
            .map(|col| {
                let (alpha, _) = alpha(op, p, col);
                a[col] + alpha * (b[col] - a[col])
            })
            .collect();
        LerpRow { a, b, z }
    }
}

/// Normalize-lerp-normalize y = N(a + α ⊙ (N(u) − a)) of `rows × cols` matrices, row by row.
///
/// a = N(h) when `op.renorm_h`, else a = h; α_c = c·p_c, or |c·p_c| when `op.abs_alpha`, with
/// p either `cols` entries or one scalar broadcast to every channel. All three normalizations
/// use `op.eps` over whole rows.
///
/// # Errors
///
/// [`Error::InvalidShape`] if `rows` or `cols` is 0, `h` or `u` does not hold `rows * cols`
/// elements, or `p` holds neither `cols` elements nor 1; [`Error::InvalidParameter`] for an
/// invalid eps or a non-finite c.
pub fn lerp_normalize_forward(
    op: &LerpNormalize,
    rows: usize,
    cols: usize,
    h: &[f64],
    u: &[f64],
    p: &[f64],
) -> Result<Vec<f64>> {
    check_lerp(op, rows, cols, h, u, p)?;
    let mut y = Vec::with_capacity(h.len());
    for (h, u) in h.chunks_exact(cols).zip(u.chunks_exact(cols)) {
        let mut z = LerpRow::new(op, h, u, p).z;
        normalize_in_place(op.eps, &mut z);
        y.extend_from_slice(&z);
    }
    Ok(y)
}

/// Gradients of [`lerp_normalize_backward`].
#[derive(Debug, Clone, PartialEq)]
pub struct LerpGrads {
    /// dL/dh, `rows * cols` elements.
    pub dh: Vec<f64>,
    /// dL/du, `rows * cols` elements.
    pub du: Vec<f64>,
    /// dL/dp, as many elements as p (`cols`, or 1 for a scalar p).
    pub dp: Vec<f64>,
}

/// Backward of [`lerp_normalize_forward`] by the chain rule, row by row:
///
/// - gz = (∂N/∂z)ᵀ dy (the normalization backward of [`normalize_backward`]);
/// - z = (1 − α) ⊙ a + α ⊙ b, so ga = (1 − α) ⊙ gz, gb = α ⊙ gz and dL/dα = gz ⊙ (b − a);
/// - du = (∂N/∂u)ᵀ gb; dh = (∂N/∂h)ᵀ ga when `renorm_h`, else ga;
/// - dp\[c\] = Σ_rows dL/dα_c · dα_c/dp_c, with dα/dp = c, or c·sign(c·p) when `abs_alpha`
///   (sign(0) = 0, as torch). For a scalar p, dp\[0\] sums over rows and channels. The sums run
///   in row order, then channel order.
///
/// # Errors
///
/// As [`lerp_normalize_forward`], and [`Error::InvalidShape`] if `dy.len() != rows * cols`.
pub fn lerp_normalize_backward(
    op: &LerpNormalize,
    rows: usize,
    cols: usize,
    h: &[f64],
    u: &[f64],
    p: &[f64],
    dy: &[f64],
) -> Result<LerpGrads> {
    check_lerp(op, rows, cols, h, u, p)?;
    check_len("dy", dy, h.len())?;

    let mut dh = vec![0.0; h.len()];
    let mut du = vec![0.0; u.len()];
    let mut dp = vec![0.0; p.len()];
    let mut gz = vec![0.0; cols];
    let mut ga = vec![0.0; cols];
    let mut gb = vec![0.0; cols];

    let rows_iter = h
        .chunks_exact(cols)
        .zip(u.chunks_exact(cols))
        .zip(dy.chunks_exact(cols));
    let grads_iter = dh.chunks_exact_mut(cols).zip(du.chunks_exact_mut(cols));
    for (((h, u), dy), (dh, du)) in rows_iter.zip(grads_iter) {
        let LerpRow { a, b, z } = LerpRow::new(op, h, u, p);
        normalize_vjp(op.eps, &z, dy, &mut gz);
        for col in 0..cols {
            let (alpha, dalpha_dp) = alpha(op, p, col);
            ga[col] = (1.0 - alpha) * gz[col];
            gb[col] = alpha * gz[col];
            let dp_index = if p.len() == 1 { 0 } else { col };
            dp[dp_index] += gz[col] * (b[col] - a[col]) * dalpha_dp;
        }
        normalize_vjp(op.eps, u, &gb, du);
        if op.renorm_h {
            normalize_vjp(op.eps, h, &ga, dh);
        } else {
            dh.copy_from_slice(&ga);
        }
    }

    Ok(LerpGrads { dh, du, dp })
}

/// Projects a `rows × cols` matrix onto the unit sphere in place: every row (`Axis::Rows`) or
/// every column (`Axis::Cols`) becomes w / d(‖w‖) with the convention `proj.eps`.
///
/// Zero lines give 0 (NaN under `Eps::None` or eps = 0); a NaN or infinity affects only the
/// lines through it.
///
/// # Errors
///
/// [`Error::InvalidShape`] if `rows` or `cols` is 0 or `w.len() != rows * cols`;
/// [`Error::InvalidParameter`] for an invalid eps. `w` is untouched on error.
pub fn project(
    proj: &Projection,
    rows: usize,
    cols: usize,
    w: &mut [f64],
    axis: Axis,
) -> Result<()> {
    proj.eps.validate()?;
    let len = matrix_len(rows, cols)?;
    check_len("w", w, len)?;
    match axis {
        Axis::Rows => {
            for row in w.chunks_exact_mut(cols) {
                normalize_in_place(proj.eps, row);
            }
        }
        Axis::Cols => {
            // Gather each strided column, normalize it, scatter it back.
            let mut column = vec![0.0; rows];
            for col in 0..cols {
                for (v, row) in column.iter_mut().zip(w.chunks_exact(cols)) {
                    *v = row[col];
                }
                normalize_in_place(proj.eps, &mut column);
                for (&v, row) in column.iter().zip(w.chunks_exact_mut(cols)) {
                    row[col] = v;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: a small deterministic generator, so the tests need no dependency.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Uniform in [-1, 1).
        fn symmetric(&mut self) -> f64 {
            2.0 * self.uniform() - 1.0
        }

        fn vec(&mut self, len: usize) -> Vec<f64> {
            (0..len).map(|_| self.symmetric()).collect()
        }

        /// Magnitudes in [lo, hi) with random signs.
        fn signed_in(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f64> {
            (0..len)
                .map(|_| {
                    let m = lo + (hi - lo) * self.uniform();
                    if self.uniform() < 0.5 { -m } else { m }
                })
                .collect()
        }

        /// `rows × cols` with segment k (of `seg` elements, in memory order) rescaled to norm
        /// `norms[k % norms.len()]`.
        fn segments_with_norms(
            &mut self,
            rows: usize,
            cols: usize,
            seg: usize,
            norms: &[f64],
        ) -> Vec<f64> {
            let mut x = self.vec(rows * cols);
            for (k, s) in x.chunks_exact_mut(seg).enumerate() {
                let t = norms[k % norms.len()] / norm2(s);
                s.iter_mut().for_each(|v| *v *= t);
            }
            x
        }
    }

    /// A lerp op with these settings (built from a constructor, so fields added to the type
    /// for the GPU keep their defaults).
    fn lerp_op(eps: Eps, renorm_h: bool, abs_alpha: bool, c: f32) -> LerpNormalize {
        let mut op = LerpNormalize::simbav2();
        (op.eps, op.renorm_h, op.abs_alpha, op.c) = (eps, renorm_h, abs_alpha, c);
        op
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(a, b)| a * b).sum()
    }

    fn dist(a: &[f64], b: &[f64]) -> f64 {
        let d: Vec<f64> = a.iter().zip(b).map(|(a, b)| a - b).collect();
        norm2(&d)
    }

    fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{what}[{i}]: got {g:e}, want {w:e} (tol {tol:e})"
            );
        }
    }

    /// Central differences of L(x) = ⟨w, f(x)⟩ at `x`, with step `steps[i]` in coordinate i.
    ///
    /// The outputs are differenced before the dot product, so outputs that do not move cancel
    /// exactly instead of adding their rounding error (which would swamp the large gradients of
    /// tiny-norm rows).
    fn fd_grad(f: impl Fn(&[f64]) -> Vec<f64>, w: &[f64], x: &[f64], steps: &[f64]) -> Vec<f64> {
        (0..x.len())
            .map(|i| {
                let mut xs = x.to_vec();
                xs[i] = x[i] + steps[i];
                let fp = f(&xs);
                xs[i] = x[i] - steps[i];
                let fm = f(&xs);
                let diff: Vec<f64> = fp.iter().zip(&fm).map(|(p, m)| p - m).collect();
                dot(w, &diff) / (2.0 * steps[i])
            })
            .collect()
    }

    /// Steps 1e-6 times the norm of each element's segment: relative to the scale that sets
    /// the derivatives' size, so tiny-norm segments get tiny steps.
    fn segment_steps(x: &[f64], seg: usize) -> Vec<f64> {
        x.chunks_exact(seg)
            .flat_map(|s| std::iter::repeat_n(1e-6 * norm2(s), seg))
            .collect()
    }

    /// Asserts ‖analytic − fd‖ ≤ 1e-7 ‖analytic‖ on every chunk of `chunk` elements.
    fn assert_grad(what: &str, analytic: &[f64], fd: &[f64], chunk: usize) {
        assert_eq!(analytic.len(), fd.len(), "{what}: lengths");
        for (k, (a, f)) in analytic.chunks(chunk).zip(fd.chunks(chunk)).enumerate() {
            let (err, size) = (dist(a, f), norm2(a));
            assert!(
                err <= 1e-7 * size && size > 0.0,
                "{what}, chunk {k}: |analytic - fd| = {err:e}, |analytic| = {size:e}\n\
                 analytic {a:?}\nfd       {f:?}"
            );
        }
    }

    fn row_norms(y: &[f64], seg: usize) -> Vec<f64> {
        y.chunks_exact(seg).map(norm2).collect()
    }

    fn transpose(rows: usize, cols: usize, w: &[f64]) -> Vec<f64> {
        (0..rows * cols)
            .map(|k| w[(k % rows) * cols + k / rows])
            .collect()
    }

    const CONVENTIONS_EPS0: [Eps; 4] =
        [Eps::None, Eps::Clamp(0.0), Eps::Add(0.0), Eps::Inside(0.0)];

    #[test]
    fn norm2_is_exact_on_hand_values_and_extremes() {
        assert_eq!(norm2(&[3.0, 4.0]), 5.0);
        assert_eq!(norm2(&[]), 0.0);
        assert_eq!(norm2(&[0.0, -0.0]), 0.0);
        assert_eq!(norm2(&[-2.0]), 2.0);
        let rel = |got: f64, want: f64| ((got - want) / want).abs();
        // A plain f64 sum of squares overflows (1e601) or underflows (1e-601) on these.
        assert!(rel(norm2(&[3e300, 4e300]), 5e300) < 1e-15);
        assert!(rel(norm2(&[3e-300, 4e-300]), 5e-300) < 1e-15);
        assert!(rel(norm2(&[1e200; 4]), 2e200) < 1e-15);
        assert!(
            norm2(&[f64::MAX, f64::MAX]).is_infinite(),
            "the true norm exceeds f64::MAX"
        );
        // Subnormals keep only a few digits of their own.
        assert!(rel(norm2(&[3e-320, 4e-320]), 5e-320) < 1e-3);
        // f32 range ends, where an f32 sum of squares fails.
        assert!(rel(norm2(&[3e38, 4e38]), 5e38) < 1e-15);
        assert!(rel(norm2(&[3e-40, 4e-40]), 5e-40) < 1e-15);
        // Non-finite entries.
        assert!(norm2(&[1.0, f64::NAN]).is_nan());
        assert!(norm2(&[f64::INFINITY, f64::NAN]).is_nan());
        assert_eq!(norm2(&[1.0, f64::NEG_INFINITY]), f64::INFINITY);
        assert_eq!(norm2(&[f64::INFINITY, f64::INFINITY]), f64::INFINITY);
    }

    #[test]
    fn three_four_gives_six_tenths_eight_tenths_for_every_convention_at_eps_zero() {
        for eps in CONVENTIONS_EPS0 {
            let y = normalize_forward(&Normalize::new(eps), 1, 2, &[3.0, 4.0], None).unwrap();
            assert_close(&format!("{eps:?}"), &y, &[0.6, 0.8], 1e-16);
            let mut w = [3.0, 4.0];
            project(&Projection::new(eps), 1, 2, &mut w, Axis::Rows).unwrap();
            assert_close(&format!("project {eps:?}"), &w, &[0.6, 0.8], 1e-16);
        }
    }

    #[test]
    fn hand_values_with_eps() {
        let x = [3.0, 4.0]; // norm 5
        let cases: [(Eps, [f64; 2]); 6] = [
            (Eps::Clamp(10.0), [0.3, 0.4]),        // eps above the norm: x / eps
            (Eps::Clamp(1.0), [0.6, 0.8]),         // below: x / n
            (Eps::Clamp(5.0), [0.6, 0.8]),         // the tie: either branch gives x / 5
            (Eps::Add(5.0), [0.3, 0.4]),           // x / (5 + 5)
            (Eps::Inside(11.0), [0.5, 4.0 / 6.0]), // x / √(25 + 11)
            (
                Eps::Inside(0.25),
                [3.0 / 25.25f64.sqrt(), 4.0 / 25.25f64.sqrt()],
            ),
        ];
        for (eps, want) in cases {
            let y = normalize_forward(&Normalize::new(eps), 1, 2, &x, None).unwrap();
            assert_close(&format!("{eps:?}"), &y, &want, 1e-15);
        }
    }

    #[test]
    fn output_norms_follow_each_convention() {
        let mut rng = Rng(1);
        let (rows, cols) = (8, 16);
        let norms = [1e-4, 3e-3, 0.05, 0.7, 1.0, 3.0, 25.0, 1e3];
        let x = rng.segments_with_norms(rows, cols, cols, &norms);
        let e = 0.01;
        // ‖N(x)‖ as a function of (n, eps).
        type OutputNorm = fn(f64, f64) -> f64;
        let cases: [(Eps, OutputNorm); 4] = [
            (Eps::None, |_, _| 1.0),
            (Eps::Clamp(e as f32), |n, e| if n < e { n / e } else { 1.0 }),
            (Eps::Add(e as f32), |n, e| n / (n + e)),
            (Eps::Inside(e as f32), |n, e| n / (n * n + e).sqrt()),
        ];
        for (eps, want) in cases {
            let y = normalize_forward(&Normalize::new(eps), rows, cols, &x, None).unwrap();
            let want: Vec<f64> = norms
                .iter()
                .map(|&n| want(n, f64::from(eps.value())))
                .collect();
            assert_close(&format!("{eps:?}"), &row_norms(&y, cols), &want, 1e-14);
        }
    }

    #[test]
    fn scale_multiplies_each_channel() {
        let mut rng = Rng(2);
        let (rows, cols) = (5, 12);
        let x = rng.vec(rows * cols);
        let s = rng.signed_in(cols, 0.5, 2.0);
        for op in [
            Normalize::new(Eps::Clamp(1e-8)),
            Normalize::new(Eps::Add(0.1)).groups(3),
        ] {
            let plain = normalize_forward(&op, rows, cols, &x, None).unwrap();
            let scaled = normalize_forward(&op, rows, cols, &x, Some(&s)).unwrap();
            let want: Vec<f64> = plain
                .iter()
                .enumerate()
                .map(|(k, y)| y * s[k % cols])
                .collect();
            assert_close(&format!("{op:?}"), &scaled, &want, 0.0);
        }
    }

    #[test]
    fn groups_equal_separate_calls_per_group() {
        let mut rng = Rng(3);
        let (rows, cols, group) = (4, 12, 4);
        let x = rng.segments_with_norms(rows, cols, group, &[0.5, 2.0, 1e-3, 7.0, 0.05]);
        let s = rng.signed_in(cols, 0.5, 2.0);
        let dy = rng.vec(rows * cols);
        for eps in [
            Eps::None,
            Eps::Clamp(0.1),
            Eps::Add(0.01),
            Eps::Inside(0.01),
        ] {
            let op = Normalize::new(eps).groups(group);
            let y = normalize_forward(&op, rows, cols, &x, Some(&s)).unwrap();
            let grads = normalize_backward(&op, rows, cols, &x, Some(&s), &dy).unwrap();
            let mut dscale = vec![0.0; cols];
            for j in 0..cols / group {
                // The group's channels as a separate rows × group matrix.
                let part = |m: &[f64]| -> Vec<f64> {
                    m.chunks_exact(cols)
                        .flat_map(|r| r[j * group..][..group].to_vec())
                        .collect()
                };
                let sj = &s[j * group..][..group];
                let whole = Normalize::new(eps);
                let yj = normalize_forward(&whole, rows, group, &part(&x), Some(sj)).unwrap();
                let gj = normalize_backward(&whole, rows, group, &part(&x), Some(sj), &part(&dy))
                    .unwrap();
                assert_close(&format!("{eps:?} y group {j}"), &part(&y), &yj, 0.0);
                assert_close(
                    &format!("{eps:?} dx group {j}"),
                    &part(&grads.dx),
                    &gj.dx,
                    0.0,
                );
                dscale[j * group..][..group].copy_from_slice(&gj.dscale.unwrap());
            }
            assert_close(
                &format!("{eps:?} dscale"),
                grads.dscale.as_ref().unwrap(),
                &dscale,
                0.0,
            );
        }
    }

    #[test]
    fn none_is_invariant_under_positive_scaling() {
        let mut rng = Rng(4);
        let (rows, cols) = (3, 9);
        let x = rng.vec(rows * cols);
        let op = Normalize::new(Eps::None);
        let y = normalize_forward(&op, rows, cols, &x, None).unwrap();
        for t in [1e-200, 1e-30, 0.37, 3.0, 1e30, 1e200] {
            let xt: Vec<f64> = x.iter().map(|v| v * t).collect();
            let yt = normalize_forward(&op, rows, cols, &xt, None).unwrap();
            assert_close(&format!("t = {t:e}"), &yt, &y, 4e-16);
        }
    }

    #[test]
    fn projection_gives_unit_rows_and_columns() {
        let mut rng = Rng(5);
        let (rows, cols) = (5, 7);
        let w = rng.vec(rows * cols);
        for eps in [
            Eps::None,
            Eps::Clamp(1e-8),
            Eps::Add(1e-12),
            Eps::Inside(1e-20),
        ] {
            let proj = Projection::new(eps);
            let mut by_rows = w.clone();
            project(&proj, rows, cols, &mut by_rows, Axis::Rows).unwrap();
            assert_close(
                &format!("{eps:?} row norms"),
                &row_norms(&by_rows, cols),
                &[1.0; 5],
                1e-11,
            );
            let normalized = normalize_forward(&Normalize::new(eps), rows, cols, &w, None).unwrap();
            assert_close(
                &format!("{eps:?} rows = normalize"),
                &by_rows,
                &normalized,
                0.0,
            );

            let mut by_cols = w.clone();
            project(&proj, rows, cols, &mut by_cols, Axis::Cols).unwrap();
            let cols_as_rows = transpose(rows, cols, &by_cols);
            assert_close(
                &format!("{eps:?} col norms"),
                &row_norms(&cols_as_rows, rows),
                &[1.0; 7],
                1e-11,
            );
            // Projecting columns is projecting the rows of the transpose.
            let mut wt = transpose(rows, cols, &w);
            project(&proj, cols, rows, &mut wt, Axis::Rows).unwrap();
            assert_close(
                &format!("{eps:?} cols = rows of transpose"),
                &cols_as_rows,
                &wt,
                0.0,
            );
        }
    }

    #[test]
    fn lerp_is_the_composition_and_hits_its_endpoints() {
        let mut rng = Rng(6);
        let (rows, cols) = (4, 10);
        let h = rng.segments_with_norms(rows, cols, cols, &[0.3, 1.0, 4.0]);
        let u = rng.segments_with_norms(rows, cols, cols, &[2.0, 0.1, 1.0]);
        let p = rng.signed_in(cols, 0.1, 1.0);
        for eps in [Eps::None, Eps::Clamp(0.5), Eps::Add(0.1), Eps::Inside(0.1)] {
            let norm =
                |m: &[f64]| normalize_forward(&Normalize::new(eps), rows, cols, m, None).unwrap();
            for (renorm_h, abs_alpha, c) in
                [(false, false, 1.0), (true, true, -0.75), (true, false, 0.5)]
            {
                let op = lerp_op(eps, renorm_h, abs_alpha, c);
                let a = if renorm_h { norm(&h) } else { h.clone() };
                let b = norm(&u);
                let what = format!("{op:?}");

                // y = N(a + α ⊙ (b − a)), built from separate normalize calls.
                let z: Vec<f64> = (0..rows * cols)
                    .map(|k| {
                        let cp = f64::from(c) * p[k % cols];
                        let alpha = if abs_alpha { cp.abs() } else { cp };
                        a[k] + alpha * (b[k] - a[k])
                    })
                    .collect();
                let y = lerp_normalize_forward(&op, rows, cols, &h, &u, &p).unwrap();
                assert_close(&format!("{what} composition"), &y, &norm(&z), 1e-15);

                // α = 0 keeps a, α = 1 moves to b (p scalar, broadcast).
                let y0 = lerp_normalize_forward(&op, rows, cols, &h, &u, &[0.0]).unwrap();
                assert_close(&format!("{what} alpha 0"), &y0, &norm(&a), 1e-15);
                let p1 = [1.0 / f64::from(c)];
                let y1 = lerp_normalize_forward(&op, rows, cols, &h, &u, &p1).unwrap();
                assert_close(&format!("{what} alpha 1"), &y1, &norm(&b), 1e-15);
            }
        }
        // Under None, α = 1 gives N(N(u)) = N(u) itself.
        let op = LerpNormalize::ngpt(1.0);
        let y1 = lerp_normalize_forward(&op, rows, cols, &h, &u, &[1.0]).unwrap();
        let nu = normalize_forward(&Normalize::new(Eps::None), rows, cols, &u, None).unwrap();
        assert_close("ngpt alpha 1", &y1, &nu, 1e-15);
    }

    /// The (eps, segment norms) cases of the normalize gradient checks: every convention, Clamp
    /// on both sides of eps, Add and Inside at norms far below eps.
    fn gradient_cases() -> Vec<(Eps, Vec<f64>)> {
        vec![
            (Eps::None, vec![0.3, 1.0, 40.0, 1e-3]),
            (Eps::Clamp(1.0), vec![0.25, 2.5, 0.6, 7.0]),
            (Eps::Clamp(1e-8), vec![1e-9, 1.0, 4e-9, 3e-8]),
            (Eps::Add(0.5), vec![1e-3, 0.05, 2.0, 0.5]),
            (Eps::Add(1e-8), vec![1e-9, 3e-8, 1e-12, 1.0]),
            (Eps::Inside(0.25), vec![1e-3, 0.3, 4.0, 0.5]),
            (Eps::Inside(1e-6), vec![1e-5, 1e-3, 1.0, 1e-8]),
        ]
    }

    #[test]
    fn normalize_backward_matches_finite_differences() {
        let mut rng = Rng(7);
        let (rows, cols) = (4, 12);
        for (eps, norms) in gradient_cases() {
            for group in [None, Some(4), Some(1)] {
                let mut op = Normalize::new(eps);
                op.group = group;
                let seg = group.unwrap_or(cols);
                let x = rng.segments_with_norms(rows, cols, seg, &norms);
                let dy = rng.vec(rows * cols);
                let s = rng.signed_in(cols, 0.5, 2.0);
                for scale in [None, Some(s.as_slice())] {
                    let what = format!("{op:?}, scale {}", scale.is_some());
                    let fwd = |x: &[f64], s: Option<&[f64]>| {
                        normalize_forward(&op, rows, cols, x, s).unwrap()
                    };
                    let grads = normalize_backward(&op, rows, cols, &x, scale, &dy).unwrap();

                    let fd_dx = fd_grad(|x| fwd(x, scale), &dy, &x, &segment_steps(&x, seg));
                    if seg == 1 {
                        // N is piecewise constant (±1) in one dimension under None and Clamp
                        // above eps: the gradient is exactly 0 there, so compare absolutely.
                        for (k, (a, f)) in grads.dx.iter().zip(&fd_dx).enumerate() {
                            let size = f64::max(1.0, 1.0 / x[k].abs());
                            assert!(
                                (a - f).abs() <= 1e-7 * size,
                                "{what} dx[{k}]: {a:e} vs {f:e}"
                            );
                        }
                    } else {
                        assert_grad(&format!("{what} dx"), &grads.dx, &fd_dx, seg);
                    }

                    assert_eq!(
                        grads.dscale.is_some(),
                        scale.is_some(),
                        "{what}: dscale presence"
                    );
                    if let Some(s) = scale {
                        let steps: Vec<f64> = s.iter().map(|v| 1e-6 * v.abs()).collect();
                        let fd_ds = fd_grad(|s| fwd(&x, Some(s)), &dy, s, &steps);
                        assert_grad(
                            &format!("{what} dscale"),
                            grads.dscale.as_ref().unwrap(),
                            &fd_ds,
                            cols,
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn backward_agrees_with_the_documented_formulas() {
        // The formulas in `Eps`'s docs, written out with y = N(x) and r = 1/d.
        let mut rng = Rng(8);
        let (rows, cols) = (4, 8);
        for (eps, norms) in gradient_cases() {
            let x = rng.segments_with_norms(rows, cols, cols, &norms);
            let g = rng.vec(rows * cols);
            let op = Normalize::new(eps);
            let y = normalize_forward(&op, rows, cols, &x, None).unwrap();
            let dx = normalize_backward(&op, rows, cols, &x, None, &g)
                .unwrap()
                .dx;
            for row in 0..rows {
                let range = row * cols..(row + 1) * cols;
                let (x, y, g, dx) = (
                    &x[range.clone()],
                    &y[range.clone()],
                    &g[range.clone()],
                    &dx[range],
                );
                let n = norm2(x);
                let e = f64::from(eps.value());
                let yg = dot(y, g);
                let want: Vec<f64> = match eps {
                    Eps::Clamp(_) if n < e => g.iter().map(|g| g / e).collect(),
                    Eps::Add(_) => (0..cols).map(|c| g[c] / (n + e) - y[c] * yg / n).collect(),
                    _ => {
                        let r = match eps {
                            Eps::Inside(_) => 1.0 / (n * n + e).sqrt(),
                            _ => 1.0 / n,
                        };
                        (0..cols).map(|c| r * (g[c] - y[c] * yg)).collect()
                    }
                };
                let tol = 1e-13 * norm2(&want);
                assert!(
                    dist(dx, &want) <= tol,
                    "{eps:?} row {row} (n = {n:e}): {dx:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn clamp_tie_takes_the_normalizing_branch() {
        // n = 5 = eps exactly: the forward is x/5 either way, the backward is r (g − y⟨y, g⟩).
        let (x, g) = ([3.0, 4.0], [1.0, -2.0]);
        let op = Normalize::new(Eps::Clamp(5.0));
        let dx = normalize_backward(&op, 1, 2, &x, None, &g).unwrap().dx;
        let y = [0.6, 0.8];
        let yg = dot(&y, &g);
        let want = [(g[0] - y[0] * yg) / 5.0, (g[1] - y[1] * yg) / 5.0];
        assert_close("tie", &dx, &want, 1e-16);
        // Just below the tie it is the constant branch g / eps.
        let op = Normalize::new(Eps::Clamp(5.0000005));
        let dx = normalize_backward(&op, 1, 2, &x, None, &g).unwrap().dx;
        let e = f64::from(5.0000005f32);
        assert_close("below", &dx, &[g[0] / e, g[1] / e], 1e-16);
    }

    #[test]
    fn lerp_backward_matches_finite_differences() {
        let mut rng = Rng(9);
        let (rows, cols) = (3, 8);
        let conventions = [Eps::None, Eps::Clamp(0.5), Eps::Add(0.1), Eps::Inside(0.05)];
        for eps in conventions {
            for renorm_h in [false, true] {
                for abs_alpha in [false, true] {
                    for scalar_p in [false, true] {
                        let c = if abs_alpha { -0.75 } else { 1.25 };
                        let op = lerp_op(eps, renorm_h, abs_alpha, c);
                        let what = format!("{op:?}, scalar p {scalar_p}");
                        // Norms on both sides of the Clamp eps, for h and for u.
                        let h = rng.segments_with_norms(rows, cols, cols, &[0.3, 2.0, 0.9]);
                        let u = rng.segments_with_norms(rows, cols, cols, &[1.5, 0.2, 0.7]);
                        let p = rng.signed_in(if scalar_p { 1 } else { cols }, 0.2, 1.0);
                        let dy = rng.vec(rows * cols);
                        let fwd = |h: &[f64], u: &[f64], p: &[f64]| {
                            lerp_normalize_forward(&op, rows, cols, h, u, p).unwrap()
                        };
                        let grads =
                            lerp_normalize_backward(&op, rows, cols, &h, &u, &p, &dy).unwrap();
                        assert_eq!(grads.dp.len(), p.len(), "{what}: dp length");

                        let fd_dh = fd_grad(|h| fwd(h, &u, &p), &dy, &h, &segment_steps(&h, cols));
                        assert_grad(&format!("{what} dh"), &grads.dh, &fd_dh, cols);
                        let fd_du = fd_grad(|u| fwd(&h, u, &p), &dy, &u, &segment_steps(&u, cols));
                        assert_grad(&format!("{what} du"), &grads.du, &fd_du, cols);
                        let steps: Vec<f64> = p.iter().map(|v| 1e-6 * v.abs()).collect();
                        let fd_dp = fd_grad(|p| fwd(&h, &u, p), &dy, &p, &steps);
                        assert_grad(&format!("{what} dp"), &grads.dp, &fd_dp, p.len());
                    }
                }
            }
        }
    }

    #[test]
    fn abs_alpha_has_zero_gradient_where_c_p_is_zero() {
        let mut rng = Rng(10);
        let (rows, cols) = (3, 6);
        let h = rng.vec(rows * cols);
        let u = rng.vec(rows * cols);
        let dy = rng.vec(rows * cols);
        let p = [0.5, 0.0, -0.3, -0.0, 0.2, 0.0];
        let with_abs = lerp_op(Eps::None, true, true, 0.5);
        let g = lerp_normalize_backward(&with_abs, rows, cols, &h, &u, &p, &dy).unwrap();
        for k in [1, 3, 5] {
            assert_eq!(g.dp[k], 0.0, "sign(0) = 0 makes dp[{k}] vanish");
        }
        for k in [0, 2, 4] {
            assert!(g.dp[k] != 0.0 && g.dp[k].is_finite());
        }
        // Without abs, dα/dp = c, so the gradient at p = 0 is generically non-zero.
        let plain = LerpNormalize {
            abs_alpha: false,
            ..with_abs
        };
        let g = lerp_normalize_backward(&plain, rows, cols, &h, &u, &p, &dy).unwrap();
        assert!(
            g.dp.iter().all(|v| *v != 0.0 && v.is_finite()),
            "{:?}",
            g.dp
        );
    }

    #[test]
    fn extreme_magnitudes_give_unit_rows_and_consistent_gradients() {
        let mut rng = Rng(11);
        let cols = 6;
        let base = rng.vec(cols);
        let y_base = normalize_forward(&Normalize::new(Eps::None), 1, cols, &base, None).unwrap();
        let dy = rng.vec(cols);
        let g_base = normalize_backward(&Normalize::new(Eps::None), 1, cols, &base, None, &dy)
            .unwrap()
            .dx;
        // f64 extremes, and the f32/bf16 range ends (f32::MAX ≈ 3.4e38, subnormals 1e-40..1e-45).
        for t in [1e300, 1e-300, 3e38, 1e-40, 1e-45] {
            let x: Vec<f64> = base.iter().map(|v| v * t).collect();
            let mut conventions = CONVENTIONS_EPS0.to_vec();
            if t > 1.0 {
                // A small eps is negligible next to a huge norm.
                conventions.extend([Eps::Clamp(1e-8), Eps::Add(1e-8), Eps::Inside(1e-8)]);
            }
            for eps in conventions {
                let op = Normalize::new(eps);
                let y = normalize_forward(&op, 1, cols, &x, None).unwrap();
                assert_close(&format!("{eps:?} t = {t:e}"), &y, &y_base, 1e-15);
                let mut w = x.clone();
                project(&Projection::new(eps), 1, cols, &mut w, Axis::Rows).unwrap();
                assert_close(&format!("project {eps:?} t = {t:e}"), &w, &y_base, 1e-15);
                // dx(t x) = dx(x) / t for a degree-0 homogeneous N.
                let dx = normalize_backward(&op, 1, cols, &x, None, &dy).unwrap().dx;
                let rescaled: Vec<f64> = dx.iter().map(|v| v * t).collect();
                assert!(
                    dist(&rescaled, &g_base) <= 1e-14 * norm2(&g_base),
                    "{eps:?} dx at t = {t:e}"
                );
            }
        }
        // One row mixing both ends: the tiny entries round away, the row stays unit.
        let x = [1e300, -2e300, 1e-300, 5e-310, 2e300, 0.0];
        let y = normalize_forward(&Normalize::new(Eps::None), 1, 6, &x, None).unwrap();
        assert!((norm2(&y) - 1.0).abs() < 1e-15);
        assert_close(
            "mixed",
            &y,
            &[1.0 / 3.0, -2.0 / 3.0, 0.0, 0.0, 2.0 / 3.0, 0.0],
            1e-15,
        );
        // Lerp at huge and tiny inputs equals lerp at unit-scale inputs (a = N(h), b = N(u)).
        let op = LerpNormalize::ngpt(0.5);
        let (h, u, p) = (rng.vec(cols), rng.vec(cols), rng.signed_in(cols, 0.2, 1.0));
        let want = lerp_normalize_forward(&op, 1, cols, &h, &u, &p).unwrap();
        let huge: Vec<f64> = h.iter().map(|v| v * 1e300).collect();
        let tiny: Vec<f64> = u.iter().map(|v| v * 1e-300).collect();
        let got = lerp_normalize_forward(&op, 1, cols, &huge, &tiny, &p).unwrap();
        assert_close("lerp extremes", &got, &want, 1e-15);
    }

    #[test]
    fn zero_rows_get_their_conventions_results() {
        let (rows, cols) = (2, 4);
        let mut x = vec![0.0; rows * cols];
        x[4..].copy_from_slice(&[1.0, 2.0, -2.0, 4.0]); // row 1 is not zero
        let g = [1.0, -2.0, 0.5, 3.0, 1.0, 1.0, 1.0, 1.0];
        let e = 1e-3f32;
        let ef = f64::from(e);
        // (convention, forward of the zero row, its dx / g).
        let cases = [
            (Eps::Clamp(e), 0.0, 1.0 / ef),
            (Eps::Add(e), 0.0, 1.0 / ef),
            (Eps::Inside(e), 0.0, 1.0 / ef.sqrt()),
        ];
        for (eps, y0, dx_over_g) in cases {
            let op = Normalize::new(eps);
            let y = normalize_forward(&op, rows, cols, &x, None).unwrap();
            assert_close(&format!("{eps:?} y"), &y[..4], &[y0; 4], 0.0);
            let dx = normalize_backward(&op, rows, cols, &x, None, &g)
                .unwrap()
                .dx;
            let want: Vec<f64> = g[..4].iter().map(|g| g * dx_over_g).collect();
            assert_close(&format!("{eps:?} dx"), &dx[..4], &want, 1e-12);
            let mut w = x.clone();
            project(&Projection::new(eps), rows, cols, &mut w, Axis::Rows).unwrap();
            assert_close(&format!("{eps:?} project"), &w[..4], &[0.0; 4], 0.0);
        }
        // None (and any convention with eps = 0) leaves 0/0 undefined: NaN, in that row only.
        for eps in [Eps::None, Eps::Clamp(0.0), Eps::Add(0.0), Eps::Inside(0.0)] {
            let op = Normalize::new(eps);
            let y = normalize_forward(&op, rows, cols, &x, None).unwrap();
            assert!(y[..4].iter().all(|v| v.is_nan()), "{eps:?}: {y:?}");
            assert!(y[4..].iter().all(|v| v.is_finite()));
            let dx = normalize_backward(&op, rows, cols, &x, None, &g)
                .unwrap()
                .dx;
            assert!(dx[..4].iter().all(|v| v.is_nan()), "{eps:?}: {dx:?}");
            assert!(dx[4..].iter().all(|v| v.is_finite()));
        }
        // Add's backward is continuous at 0: a row of norm 1e-9·eps is within 1e-8 of g / eps.
        let tiny = [1e-12, -2e-12, 0.0, 2e-12];
        let dx = normalize_backward(&Normalize::new(Eps::Add(e)), 1, 4, &tiny, None, &g[..4])
            .unwrap()
            .dx;
        let want: Vec<f64> = g[..4].iter().map(|g| g / ef).collect();
        assert!(dist(&dx, &want) <= 1e-8 * norm2(&want));
        // Lerp with a zero u under Clamp: b = 0, everything finite.
        let op = LerpNormalize::simbav2();
        let h = [0.5, 0.5, 0.5, 0.5];
        let gr = lerp_normalize_backward(&op, 1, 4, &h, &[0.0; 4], &[0.3], &g[..4]).unwrap();
        assert!(
            gr.dh
                .iter()
                .chain(&gr.du)
                .chain(&gr.dp)
                .all(|v| v.is_finite()),
            "{gr:?}"
        );
    }

    #[test]
    fn a_non_finite_row_leaves_the_other_rows_unchanged() {
        let mut rng = Rng(12);
        let (rows, cols) = (4, 8);
        let clean_x = rng.vec(rows * cols);
        let clean_u = rng.vec(rows * cols);
        let dy = rng.vec(rows * cols);
        let p = rng.signed_in(cols, 0.1, 1.0);
        let bad_row = 2;
        let in_bad = |k: usize| k / cols == bad_row;
        for poison in [f64::NAN, f64::INFINITY] {
            let mut x = clean_x.clone();
            x[bad_row * cols + 3] = poison;
            // Rows other than bad_row must be bit-identical to the clean run.
            let check = |what: &str, got: &[f64], want: &[f64]| {
                for (k, (g, w)) in got.iter().zip(want).enumerate() {
                    if in_bad(k) {
                        continue;
                    }
                    assert_eq!(g.to_bits(), w.to_bits(), "{what} {poison}: element {k}");
                }
                assert!(
                    got[bad_row * cols..][..cols].iter().any(|v| !v.is_finite()),
                    "{what} {poison}: the poisoned row should not come out finite"
                );
            };
            for eps in [
                Eps::None,
                Eps::Clamp(1e-8),
                Eps::Add(1e-3),
                Eps::Inside(1e-3),
            ] {
                let op = Normalize::new(eps).groups(4);
                let y = normalize_forward(&op, rows, cols, &x, None).unwrap();
                let y0 = normalize_forward(&op, rows, cols, &clean_x, None).unwrap();
                check(&format!("{eps:?} y"), &y, &y0);
                let dx = normalize_backward(&op, rows, cols, &x, None, &dy)
                    .unwrap()
                    .dx;
                let dx0 = normalize_backward(&op, rows, cols, &clean_x, None, &dy)
                    .unwrap()
                    .dx;
                check(&format!("{eps:?} dx"), &dx, &dx0);
                if poison.is_nan() {
                    // A NaN poisons its whole group; the other group of the row stays finite.
                    assert!(y[bad_row * cols..][..4].iter().all(|v| v.is_nan()));
                    assert!(y[bad_row * cols + 4..][..4].iter().all(|v| v.is_finite()));
                }

                let lop = lerp_op(eps, true, false, 1.0);
                let y = lerp_normalize_forward(&lop, rows, cols, &x, &clean_u, &p).unwrap();
                let y0 = lerp_normalize_forward(&lop, rows, cols, &clean_x, &clean_u, &p).unwrap();
                check(&format!("{eps:?} lerp y"), &y, &y0);
                let g = lerp_normalize_backward(&lop, rows, cols, &x, &clean_u, &p, &dy).unwrap();
                let g0 =
                    lerp_normalize_backward(&lop, rows, cols, &clean_x, &clean_u, &p, &dy).unwrap();
                check(&format!("{eps:?} lerp dh"), &g.dh, &g0.dh);
                check(&format!("{eps:?} lerp du"), &g.du, &g0.du);

                let (mut w, mut w0) = (x.clone(), clean_x.clone());
                project(&Projection::new(eps), rows, cols, &mut w, Axis::Rows).unwrap();
                project(&Projection::new(eps), rows, cols, &mut w0, Axis::Rows).unwrap();
                check(&format!("{eps:?} project rows"), &w, &w0);
            }
            // Projecting columns: only column 3 sees the poisoned entry.
            let (mut w, mut w0) = (x.clone(), clean_x.clone());
            let proj = Projection::new(Eps::Clamp(1e-8));
            project(&proj, rows, cols, &mut w, Axis::Cols).unwrap();
            project(&proj, rows, cols, &mut w0, Axis::Cols).unwrap();
            for k in 0..rows * cols {
                if k % cols == 3 {
                    assert!(
                        !w[k].is_finite() || poison.is_infinite(),
                        "column 3, element {k}"
                    );
                } else {
                    assert_eq!(
                        w[k].to_bits(),
                        w0[k].to_bits(),
                        "project cols {poison}: element {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        fn shape<T>(r: Result<T>) -> bool {
            matches!(r, Err(Error::InvalidShape(_)))
        }
        fn param<T>(r: Result<T>) -> bool {
            matches!(r, Err(Error::InvalidParameter { .. }))
        }
        let op = Normalize::new(Eps::Clamp(1e-8));
        let x = [1.0; 6];
        let s3 = [1.0; 3];

        // Normalize forward and backward.
        assert!(normalize_forward(&op, 2, 3, &x, None).is_ok());
        assert!(
            shape(normalize_forward(&op, 2, 3, &x[..5], None)),
            "x too short"
        );
        assert!(shape(normalize_forward(&op, 1, 3, &x, None)), "x too long");
        assert!(shape(normalize_forward(&op, 0, 3, &[], None)), "zero rows");
        assert!(shape(normalize_forward(&op, 2, 0, &[], None)), "zero cols");
        assert!(
            shape(normalize_forward(&op, 2, 3, &x, Some(&[1.0; 2]))),
            "scale length"
        );
        assert!(
            shape(normalize_forward(&op, 2, 3, &x, Some(&[1.0; 6]))),
            "scale length"
        );
        assert!(
            shape(normalize_forward(&op.groups(2), 2, 3, &x, None)),
            "group 2 of 3"
        );
        assert!(
            shape(normalize_forward(&op.groups(0), 2, 3, &x, None)),
            "group 0"
        );
        assert!(
            shape(normalize_forward(&op.groups(6), 2, 3, &x, None)),
            "group above cols"
        );
        assert!(normalize_forward(&op.groups(3), 2, 3, &x, None).is_ok());
        for eps in [
            Eps::Clamp(-1e-8),
            Eps::Add(f32::NAN),
            Eps::Inside(f32::INFINITY),
            Eps::Clamp(1e31),
        ] {
            assert!(
                param(normalize_forward(&Normalize::new(eps), 2, 3, &x, None)),
                "{eps:?}"
            );
            assert!(
                param(normalize_backward(&Normalize::new(eps), 2, 3, &x, None, &x)),
                "{eps:?}"
            );
        }
        assert!(normalize_backward(&op, 2, 3, &x, Some(&s3), &x).is_ok());
        assert!(
            shape(normalize_backward(&op, 2, 3, &x, Some(&s3), &x[..5])),
            "dy too short"
        );
        assert!(
            shape(normalize_backward(&op, 2, 3, &x, Some(&s3), &[1.0; 7])),
            "dy too long"
        );
        assert!(
            shape(normalize_backward(&op, 2, 3, &x[..3], None, &x)),
            "x too short"
        );
        assert!(
            shape(normalize_backward(&op, 2, 3, &x, Some(&[1.0; 4]), &x)),
            "scale length"
        );
        assert!(
            shape(normalize_backward(&op.groups(4), 2, 3, &x, None, &x)),
            "group"
        );
        let huge = normalize_forward(&op, usize::MAX, 2, &x, None);
        assert!(
            matches!(huge, Err(Error::TooLarge(_))),
            "rows * cols overflow: {huge:?}"
        );

        // Lerp.
        let lop = LerpNormalize::simbav2();
        assert!(lerp_normalize_forward(&lop, 2, 3, &x, &x, &s3).is_ok());
        assert!(lerp_normalize_forward(&lop, 2, 3, &x, &x, &[0.5]).is_ok());
        for bad_p in [&[][..], &[1.0; 2][..], &[1.0; 4][..], &[1.0; 6][..]] {
            assert!(
                shape(lerp_normalize_forward(&lop, 2, 3, &x, &x, bad_p)),
                "p {bad_p:?}"
            );
            assert!(
                shape(lerp_normalize_backward(&lop, 2, 3, &x, &x, bad_p, &x)),
                "p {bad_p:?}"
            );
        }
        assert!(
            shape(lerp_normalize_forward(&lop, 2, 3, &x[..5], &x, &s3)),
            "h length"
        );
        assert!(
            shape(lerp_normalize_forward(&lop, 2, 3, &x, &x[..5], &s3)),
            "u length"
        );
        assert!(
            shape(lerp_normalize_forward(&lop, 0, 3, &[], &[], &s3)),
            "zero rows"
        );
        assert!(
            shape(lerp_normalize_forward(&lop, 2, 0, &[], &[], &[1.0])),
            "zero cols"
        );
        assert!(
            shape(lerp_normalize_backward(&lop, 2, 3, &x, &x, &s3, &x[..5])),
            "dy length"
        );
        assert!(
            shape(lerp_normalize_backward(&lop, 2, 3, &x, &x[..4], &s3, &x)),
            "u length"
        );
        for eps in [Eps::Add(-1.0), Eps::Clamp(f32::NAN)] {
            let bad = LerpNormalize { eps, ..lop };
            assert!(
                param(lerp_normalize_forward(&bad, 2, 3, &x, &x, &s3)),
                "{eps:?}"
            );
            assert!(
                param(lerp_normalize_backward(&bad, 2, 3, &x, &x, &s3, &x)),
                "{eps:?}"
            );
        }
        let bad_c = LerpNormalize {
            c: f32::INFINITY,
            ..lop
        };
        assert!(
            param(lerp_normalize_forward(&bad_c, 2, 3, &x, &x, &s3)),
            "c = inf"
        );

        // Projection: errors leave w untouched.
        let proj = Projection::new(Eps::None);
        let mut w = x;
        assert!(
            shape(project(&proj, 2, 2, &mut w, Axis::Rows)),
            "w too long"
        );
        assert!(
            shape(project(&proj, 3, 3, &mut w, Axis::Cols)),
            "w too short"
        );
        assert!(shape(project(&proj, 0, 6, &mut w, Axis::Rows)), "zero rows");
        assert!(shape(project(&proj, 6, 0, &mut w, Axis::Cols)), "zero cols");
        assert!(param(project(
            &Projection::new(Eps::Inside(-0.5)),
            2,
            3,
            &mut w,
            Axis::Rows
        )));
        assert_eq!(w, x, "a failed projection must not write");
        assert!(project(&proj, 2, 3, &mut w, Axis::Cols).is_ok());
    }
}
