//! Spectral norms of convolutions with zero padding (stride 1), f64 reference: the exact norm
//! from the explicit operator (small cases, for tests), the circular-embedding bound, and the
//! n-independent "norm2toep" bound of Delattre, Barthélemy and Allauzen 2024 ("Spectral Norm of
//! Convolutional Layers with Circular and Zero Paddings").
//!
//! # The operator
//!
//! A kernel K of shape [c_out, c_in, k, k] (row-major, the layout of [`ConvShape`]) acts on
//! inputs x of shape [c_in, n, n] by the *full* convolution with zero padding
//!
//! ```text
//! y[o, a, b] = Σ_{i < c_in, p < k, q < k} K[o, i, p, q] · x[i, a − p, b − q],   a, b ∈ 0..n+k−1,
//! ```
//!
//! x being zero outside 0..n: every output position the kernel touches, an operator T_n of
//! (c_out (n+k−1)²) × (c_in n²) entries. This is the one whose norm the 2024 bounds bound, and
//! the largest of the zero-padding conventions:
//! - every other stride-1 zero padding (torch's `padding = P` for P ≤ k − 1: "same", "valid")
//!   keeps a subset of T_n's output rows (for the cross-correlation convention of deep-learning
//!   libraries, of T_n for the spatially flipped kernel), so its norm is at most ‖T_n‖;
//! - flipping the kernel spatially does not change ‖T_n‖: reversing the index order of the input
//!   and of the output (two permutations) turns the convolution with `K[p]` into the one with
//!   `K[k−1−p]`, so the convolution and the correlation conventions have the same full norm;
//! - T_n is a finite section of the doubly-block-Toeplitz operator whose symbol is the c_out ×
//!   c_in matrix trigonometric polynomial
//!   F(ω) = Σ_{p,q} K[:, :, p, q] e^{−i(ω₁p + ω₂q)}, and the paper's bounds bound sup_ω ‖F(ω)‖₂.
//!
//! Any k ≥ 1 and n ≥ 1 define an operator (zero padding has no k ≤ n restriction); a zero
//! dimension (c_out, c_in, k or n) makes the operator zero or empty, with norm 0.
//!
//! # The chain of bounds
//!
//! ```text
//! σ₁(T₁) ≤ σ₁(T_n) ≤ σ_circ(n + k − 1) ≤ sup_ω ‖F(ω)‖₂ ≤ norm2toep(T)    (n ≥ 1)
//! ```
//!
//! - σ₁(T₁) ≤ σ₁(T_n): inputs supported on the single pixel (0, 0) are a subspace on which T_n
//!   acts as T₁ (outputs inside k × k), so σ₁(T_n) is nondecreasing in n; T₁ is the
//!   (c_out k²) × c_in matrix M[(o, p, q), i] = K[o, i, p, q]. This gives the lower bounds.
//! - σ₁(T_n) ≤ σ_circ(N) for every N ≥ n + k − 1 (the embedding, [`conv_zero_embedding_bound`]);
//!   σ_circ(N) is the max of ‖F(ω)‖₂ over the N × N frequency grid (Sedghi et al. 2019), at most
//!   the sup over all ω. σ₁(T_n) tends to that sup as n → ∞ (finite sections of a Toeplitz
//!   operator with a continuous symbol).
//! - The sup is bounded by Gram iteration on the symbol, done on its coefficients
//!   ([`conv_zero_kernel_gram_bound`]).
//!
//! Like [`super::cpu`], nothing here is certified against rounding: the bounds hold to a few ulp.

use super::Bound;
use super::cpu::{
    ConvShape, check_iterations, conv_circular_bound, dense_bound, spectral_norm_exact,
};
use crate::error::{Error, Result};

/// The largest side (rows or columns) of the explicit operator [`conv_zero_operator_norm_exact`]
/// builds: 4096, a 128 MiB matrix whose Jacobi SVD already takes minutes.
pub const MAX_EXPLICIT_SIDE: usize = 4096;

/// The largest spatial side 2^T (k − 1) + 1 of the Gram kernel [`conv_zero_kernel_gram_bound`]
/// lets T iterations grow to: 1024, i.e. 2^20 taps per channel pair (the last step alone then
/// costs about c³ · 2^36 multiply-adds for c channels).
pub const MAX_GRAM_KERNEL_SIDE: usize = 1024;

/// Checks the kernel's length against the shape: c_out · c_in · k² entries.
fn check_kernel(shape: ConvShape, kernel: &[f64]) -> Result<()> {
    let ConvShape { c_out, c_in, k, .. } = shape;
    let len = c_out
        .checked_mul(c_in)
        .and_then(|v| v.checked_mul(k))
        .and_then(|v| v.checked_mul(k))
        .ok_or_else(|| {
            Error::shape(format!(
                "a {c_out} x {c_in} x {k} x {k} kernel overflows usize"
            ))
        })?;
    if kernel.len() != len {
        return Err(Error::shape(format!(
            "a {c_out} x {c_in} x {k} x {k} kernel has {len} entries, got {}",
            kernel.len()
        )));
    }
    Ok(())
}

/// Whether the operator is zero or empty: a zero channel count, kernel side or input side.
fn is_degenerate(shape: ConvShape) -> bool {
    let ConvShape { c_out, c_in, k, n } = shape;
    c_out == 0 || c_in == 0 || k == 0 || n == 0
}

/// Non-finite entries decide the result alone: NaN if any is NaN, else +∞ (as in [`super::cpu`]).
fn non_finite(kernel: &[f64]) -> Option<f64> {
    if kernel.iter().any(|v| v.is_nan()) {
        Some(f64::NAN)
    } else if kernel.iter().any(|v| v.is_infinite()) {
        Some(f64::INFINITY)
    } else {
        None
    }
}

/// The power of two nearest below max|K| (1 for a zero kernel; entries finite): dividing by it
/// is exact and puts the largest entry in [1, 2), so no square over- or underflows.
fn power_of_two_scale(kernel: &[f64]) -> f64 {
    let max = kernel.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    if max == 0.0 {
        return 1.0;
    }
    2f64.powi(max.log2().floor() as i32)
}

/// The same value as both ends of the enclosure.
fn exactly(value: f64, iterations: u32) -> Bound {
    Bound {
        upper: value,
        lower: value,
        iterations,
    }
}

/// The explicit full convolution T_n of the module doc, row-major, rows (o, a, b) with a, b <
/// n + k − 1, columns (i, a′, b′) with a′, b′ < n: entry K[o, i, a − a′, b − b′] where
/// 0 ≤ a − a′, b − b′ < k, else 0. Each entry receives at most one tap (the tap is fixed by the
/// row and the column), so it is assigned, never summed.
fn full_convolution_matrix(shape: ConvShape, kernel: &[f64]) -> Vec<f64> {
    let ConvShape { c_out, c_in, k, n } = shape;
    let out_side = n + k - 1;
    let cols = c_in * n * n;
    let mut m = vec![0.0; c_out * out_side * out_side * cols];
    for o in 0..c_out {
        for i in 0..c_in {
            let taps = &kernel[(o * c_in + i) * k * k..][..k * k];
            for a_in in 0..n {
                for b_in in 0..n {
                    let col = (i * n + a_in) * n + b_in;
                    for p in 0..k {
                        for q in 0..k {
                            let row = (o * out_side + a_in + p) * out_side + b_in + q;
                            m[row * cols + col] = taps[p * k + q];
                        }
                    }
                }
            }
        }
    }
    m
}

/// The exact spectral norm σ₁(T_n) of the full zero-padded convolution (module doc), by
/// [`spectral_norm_exact`] (one-sided Jacobi) of the explicit (c_out (n+k−1)²) × (c_in n²)
/// operator. Accurate to a few ulp at any finite scale. Any k ≥ 1 is allowed, k > n included.
/// Cost O(sweeps · c² n⁴ · c (n+k−1)²) for c channels: meant for tests on small cases.
///
/// A zero dimension gives 0; a NaN entry NaN, an infinite one +∞.
///
/// Errors: kernel length ≠ c_out·c_in·k² ([`Error::InvalidShape`]); an operator side above
/// [`MAX_EXPLICIT_SIDE`] ([`Error::TooLarge`]).
pub fn conv_zero_operator_norm_exact(shape: ConvShape, kernel: &[f64]) -> Result<f64> {
    check_kernel(shape, kernel)?;
    if is_degenerate(shape) {
        return Ok(0.0);
    }
    let ConvShape { c_out, c_in, k, n } = shape;
    let side = |channels: usize, spatial: Option<usize>| {
        spatial
            .and_then(|s| s.checked_mul(s))
            .and_then(|s| s.checked_mul(channels))
            .filter(|&v| v <= MAX_EXPLICIT_SIDE)
    };
    let (rows, cols) = match (side(c_out, n.checked_add(k - 1)), side(c_in, Some(n))) {
        (Some(r), Some(c)) => (r, c),
        _ => {
            return Err(Error::TooLarge(format!(
                "the explicit zero-padded operator of a {c_out} x {c_in} x {k} x {k} kernel on \
                 {n} x {n} inputs has a side above {MAX_EXPLICIT_SIDE}"
            )));
        }
    };
    if let Some(v) = non_finite(kernel) {
        return Ok(v);
    }
    spectral_norm_exact(rows, cols, &full_convolution_matrix(shape, kernel))
}

/// The lower bound every function here reports: the Gram-iteration lower bound ([`dense_bound`])
/// of σ₁(T₁), T₁ the (c_out k²) × c_in matrix M[(o, p, q), i] = K[o, i, p, q] (the convolution
/// on one input pixel), which is ≤ σ₁(T_n) for every n ≥ 1 (module doc). Finite, non-degenerate
/// kernels only.
fn one_pixel_lower_bound(shape: ConvShape, kernel: &[f64], iterations: u32) -> Result<f64> {
    let ConvShape { c_out, c_in, k, .. } = shape;
    let taps = k * k;
    let mut m = vec![0.0; c_out * taps * c_in];
    for o in 0..c_out {
        for i in 0..c_in {
            for (pq, &w) in kernel[(o * c_in + i) * taps..][..taps].iter().enumerate() {
                m[(o * taps + pq) * c_in + i] = w;
            }
        }
    }
    Ok(dense_bound(c_out * taps, c_in, &m, iterations)?.lower)
}

/// An upper bound on σ₁(T_n) (module doc) by embedding: the Gram-iteration bound
/// [`conv_circular_bound`] of the circular convolution on N × N inputs, N = n + k − 1, with
/// `iterations` = T steps.
///
/// Why it bounds: zero-extend x to N × N. For a, b < N the full convolution reads
/// x[i, a − p, b − q] with a − p ∈ −(k−1)..N−1; taken modulo N the negative indices land in
/// n..N−1, where the extended x is zero, so no wrap-around ever meets the input and
/// T_n x = C_N x̃ exactly, C_N the circular convolution. Zero extension is an isometry, so
/// σ₁(T_n) ≤ ‖C_N‖ ≤ the largest Schatten bound of its frequency blocks. ([`conv_circular_bound`]
/// uses the correlation convention `y[a] = Σ K[p] x[a + p]`; for a real kernel its frequency blocks are
/// the complex conjugates of the convolution's, with the same singular values, so ‖C_N‖ is the
/// same number.) N = n + k − 1 is the smallest N without wrap-around. As T grows the bound
/// tends to σ_circ(N) ≤ sup_ω ‖F(ω)‖₂; it is not ordered against [`conv_zero_kernel_gram_bound`]
/// at a given T (both are ≥ σ₁(T_n); that one tends to the sup).
///
/// [`Bound::lower`] is the one-pixel lower bound, the Gram-iteration lower bound of σ₁(T₁) ≤
/// σ₁(T_n) (module doc); the circular bound's own lower bound bounds ‖C_N‖, not σ₁(T_n), and is
/// not used.
///
/// A zero dimension gives 0; NaN entries NaN, infinite ones +∞ (both ends).
///
/// Errors: kernel length ≠ c_out·c_in·k², T > [`MAX_ITERATIONS`](super::MAX_ITERATIONS), n + k − 1 overflowing usize.
pub fn conv_zero_embedding_bound(
    shape: ConvShape,
    kernel: &[f64],
    iterations: u32,
) -> Result<Bound> {
    check_iterations(iterations)?;
    check_kernel(shape, kernel)?;
    if is_degenerate(shape) {
        return Ok(exactly(0.0, iterations));
    }
    if let Some(v) = non_finite(kernel) {
        return Ok(exactly(v, iterations));
    }
    // k ≥ 1 here (not degenerate).
    let enlarged = shape.n.checked_add(shape.k - 1).ok_or_else(|| {
        Error::TooLarge(format!(
            "n + k - 1 overflows usize (n = {}, k = {})",
            shape.n, shape.k
        ))
    })?;
    let circular = conv_circular_bound(
        ConvShape {
            n: enlarged,
            ..shape
        },
        kernel,
        iterations,
    )?;
    Ok(Bound {
        upper: circular.upper,
        lower: one_pixel_lower_bound(shape, kernel, iterations)?,
        iterations,
    })
}

/// A matrix trigonometric polynomial in two frequencies: `rows × cols` channel blocks of
/// `side × side` real coefficients, entry ((r · cols + c) · side + u) · side + v the coefficient
/// of e^{−i(ω₁u + ω₂v)} (up to a common shift of (u, v), a unimodular factor of the symbol that
/// neither its Gram nor the coefficients' absolute sums see).
struct SymbolCoefficients {
    rows: usize,
    cols: usize,
    side: usize,
    coefficients: Vec<f64>,
}

impl SymbolCoefficients {
    /// The side × side taps of block (r, c).
    fn block(&self, r: usize, c: usize) -> &[f64] {
        let taps = self.side * self.side;
        &self.coefficients[(r * self.cols + c) * taps..][..taps]
    }

    fn frobenius(&self) -> f64 {
        self.coefficients.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// The coefficients of the symbol's Gram A(ω)ᴴ A(ω) (cols × cols blocks, 2·side − 1 taps
    /// per axis). With real coefficients, A(ω)ᴴA(ω) = Σ_{p, p′} A[:, :, p]ᵀ A[:, :, p′]
    /// e^{−iω·(p′ − p)}; grouping the pairs by e = p′ − p,
    ///
    /// ```text
    /// G[i, j, e] = Σ_{l < rows} Σ_p A[l, i, p] · A[l, j, p + e],    e ∈ −(side−1)..side−1 per axis,
    /// ```
    ///
    /// a contraction over the row channel l and a spatial cross-correlation of block (l, i) with
    /// block (l, j), stored at tap e + side − 1. G is Hermitian as a symbol,
    /// G[j, i, e] = G[i, j, −e]: the blocks j < i are mirrored from i < j (half the work). In
    /// torch terms this is conv2d(Aᵀ, Aᵀ, padding = side − 1) with Aᵀ[i, l] = A[l, i] (its output
    /// is G transposed, i.e. spatially flipped, which the absolute sums do not see).
    fn gram(&self) -> SymbolCoefficients {
        let (rows, c, s) = (self.rows, self.cols, self.side);
        let w = 2 * s - 1;
        let taps = w * w;
        let mut g = vec![0.0; c * c * taps];
        for i in 0..c {
            for j in i..c {
                let out = &mut g[(i * c + j) * taps..][..taps];
                for l in 0..rows {
                    let (x, y) = (self.block(l, i), self.block(l, j));
                    // Tap p of x meets tap q = p + e of y: q's row qu lands on output row
                    // qu − pu + s − 1, its columns on qv − pv + s − 1 (a contiguous run).
                    for pu in 0..s {
                        for pv in 0..s {
                            let xv = x[pu * s + pv];
                            for qu in 0..s {
                                let start = (qu + s - 1 - pu) * w + (s - 1 - pv);
                                let dst = &mut out[start..start + s];
                                for (d, &yv) in dst.iter_mut().zip(&y[qu * s..(qu + 1) * s]) {
                                    *d += xv * yv;
                                }
                            }
                        }
                    }
                }
            }
        }
        // G[j, i, e] = G[i, j, −e]; negating e reverses both tap axes, i.e. the flat tap index.
        for i in 0..c {
            for j in i + 1..c {
                for t in 0..taps {
                    g[(j * c + i) * taps + t] = g[(i * c + j) * taps + taps - 1 - t];
                }
            }
        }
        SymbolCoefficients {
            rows: c,
            cols: c,
            side: w,
            coefficients: g,
        }
    }

    /// (max over rows r of Σ_{c, taps} |A[r, c, ·]|, max over columns c of Σ_{r, taps}
    /// |A[r, c, ·]|): by the triangle inequality these bound the induced ∞- and 1-norms of A(ω)
    /// at every ω.
    fn largest_absolute_row_and_column_sums(&self) -> (f64, f64) {
        let mut row = vec![0.0f64; self.rows];
        let mut col = vec![0.0f64; self.cols];
        for (r, row_sum) in row.iter_mut().enumerate() {
            for (c, col_sum) in col.iter_mut().enumerate() {
                let s: f64 = self.block(r, c).iter().map(|v| v.abs()).sum();
                *row_sum += s;
                *col_sum += s;
            }
        }
        let max = |v: Vec<f64>| v.into_iter().fold(0.0f64, f64::max);
        (max(row), max(col))
    }
}

/// The 2024 "norm2toep" upper bound on sup_ω ‖F(ω)‖₂, hence on σ₁(T_n) for every n (module doc):
/// Gram iteration on the symbol F, carried out on its coefficients, so no FFT and no n:
///
/// ```text
/// A₀ = K / s          s = power of two with max|K|/s ∈ [1, 2); channel axes swapped when
///                     c_in > c_out, so A₀'s rows are the larger channel side
/// L = 0
/// for t = 0..T−1:     r = ‖A_t‖_F;  A_t ← A_t / r;  L ← 2 (L + log r)
///                     A_{t+1}[i, j, e] = Σ_l Σ_p A_t[l, i, p] · A_t[l, j, p + e]
/// R = max_i Σ_{j,e} |A_T[i, j, e]|,  C = max_j Σ_{i,e} |A_T[i, j, e]|
/// upper = s · (R · C)^{1/2^{T+1}} · e^{L / 2^T}
/// ```
///
/// The step is the symbol's Gram: A_{t+1}(ω) = A_t(ω)ᴴ A_t(ω) (the contracted index l is the
/// *row* channel, the spatial part a cross-correlation; `SymbolCoefficients::gram` derives it),
/// so A_T(ω) = (F(ω)ᴴF(ω))^{2^{T−1}} e^{−L} / s^{2^T} for T ≥ 1 and
/// ‖F(ω)‖₂^{2^T} = s^{2^T} e^L ‖A_T(ω)‖₂. For any matrix ‖B‖₂ ≤ (‖B‖₁ ‖B‖_∞)^{1/2}, and the
/// triangle inequality bounds ‖A_T(ω)‖_∞ ≤ R and ‖A_T(ω)‖₁ ≤ C at every ω. For T ≥ 1 A_T(ω) is
/// Hermitian, R = C up to rounding and the bound is the paper's max_i t_i,
/// t_i = (Σ_{j,e} |A_T[i, j, e]|)^{1/2^T} e^{L/2^T} (times s); for T = 0 it is the Schur test
/// (R · C)^{1/2} on K itself (the paper's row sum alone would not bound a non-Hermitian symbol).
///
/// Swapping the channel axes gives the symbol F(ω)ᵀ, with the same singular values, and puts the
/// Gram on the smaller channel side: c_min × c_min blocks, cheaper, and a smaller excess. The
/// excess vanishes as T grows: for T ≥ 1, by Cauchy–Schwarz over the c_min S_T² terms of a row
/// (S_T = 2^T (k − 1) + 1 taps per axis) and Parseval (a row's coefficients have the mean square
/// over ω of that row of A_T(ω), at most sup_ω ‖A_T(ω)‖₂²),
/// R ≤ √c_min · S_T · sup_ω ‖A_T(ω)‖₂, so
/// upper ≤ (√c_min · S_T)^{1/2^T} · sup_ω ‖F(ω)‖₂, a factor that tends to 1 (S_T grows like 2^T).
/// (The background note's "conv2d(G, G)" with G transposed so c_in ≤ c_out contracts the smaller
/// axis and forms the larger Gram; the symbol norms are the same, the excess factor larger.)
///
/// The spatial side grows to 2^T (k − 1) + 1; a k = 1 kernel stays 1 × 1, and the bound is then
/// the max-row-sum bound of the dense matrix K's Gram powers. Cost: about
/// c_max c_min² Σ_t side_t⁴ / 2 multiply-adds, dominated by the last step.
///
/// [`Bound::lower`] is the one-pixel lower bound, the Gram-iteration lower bound of σ₁(T₁) (the
/// (c_out k²) × c_in matrix M[(o, p, q), i] = K[o, i, p, q]), which is ≤ σ₁(T_n) for every
/// n ≥ 1 and hence ≤ the sup. `shape.n` is not used otherwise: the bound is the same for every
/// n ≥ 1.
///
/// A zero dimension gives 0 (n = 0 included: the operator is empty); a zero kernel 0; NaN entries
/// NaN, infinite ones +∞ (both ends). Any finite scale is safe (the prescale is exact and the
/// per-step scales live in L).
///
/// Errors: kernel length ≠ c_out·c_in·k²; T > [`MAX_ITERATIONS`](super::MAX_ITERATIONS); T ≥ 1 with
/// 2^T (k − 1) + 1 > [`MAX_GRAM_KERNEL_SIDE`] ([`Error::TooLarge`]).
pub fn conv_zero_kernel_gram_bound(
    shape: ConvShape,
    kernel: &[f64],
    iterations: u32,
) -> Result<Bound> {
    check_iterations(iterations)?;
    check_kernel(shape, kernel)?;
    let ConvShape { c_out, c_in, k, .. } = shape;
    if iterations >= 1 && k >= 1 {
        // 2^T (k − 1) + 1 in u128: T ≤ 60 and k < 2^64, so it cannot overflow.
        let grown = ((k as u128 - 1) << iterations) + 1;
        if grown > MAX_GRAM_KERNEL_SIDE as u128 {
            return Err(Error::TooLarge(format!(
                "{iterations} iterations grow a {k} x {k} kernel's Gram to {grown} x {grown} \
                 taps per channel pair, above {MAX_GRAM_KERNEL_SIDE} x {MAX_GRAM_KERNEL_SIDE}"
            )));
        }
    }
    if is_degenerate(shape) {
        return Ok(exactly(0.0, iterations));
    }
    if let Some(v) = non_finite(kernel) {
        return Ok(exactly(v, iterations));
    }
    let scale = power_of_two_scale(kernel);
    let taps = k * k;
    // Rows: the larger channel axis (contracted by the first Gram step).
    let (rows, cols) = (c_out.max(c_in), c_out.min(c_in));
    let mut coefficients = vec![0.0; rows * cols * taps];
    for o in 0..c_out {
        for i in 0..c_in {
            let (r, c) = if c_in > c_out { (i, o) } else { (o, i) };
            let src = &kernel[(o * c_in + i) * taps..][..taps];
            for (d, &w) in coefficients[(r * cols + c) * taps..][..taps]
                .iter_mut()
                .zip(src)
            {
                *d = w / scale;
            }
        }
    }
    let mut a = SymbolCoefficients {
        rows,
        cols,
        side: k,
        coefficients,
    };
    if a.frobenius() == 0.0 {
        return Ok(exactly(0.0, iterations));
    }
    let mut log_scale = 0.0; // L
    for _ in 0..iterations {
        let r = a.frobenius();
        a.coefficients.iter_mut().for_each(|v| *v /= r);
        log_scale = 2.0 * (log_scale + r.ln());
        a = a.gram();
    }
    let (row, col) = a.largest_absolute_row_and_column_sums();
    let root = 2f64.powi(iterations as i32);
    let log_upper = (row.ln() + col.ln()) / (2.0 * root) + log_scale / root;
    Ok(Bound {
        upper: log_upper.exp() * scale,
        lower: one_pixel_lower_bound(shape, kernel, iterations)?,
        iterations,
    })
}
