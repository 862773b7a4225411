//! Certified upper bounds on spectral norms by Gram iteration (Delattre et al. 2023, 2024).
//!
//! For a matrix W (m × n), Gram iteration squares the Gram matrix T times with a rescaling per
//! step kept in log space:
//!
//! ```text
//! G₀ = W / s (s = max|w|),  L = log s
//! G_{t+1} = (G_t / r_t)ᴴ (G_t / r_t),  r_t = ‖G_t‖_F,  L ← 2 (L + log r_t)   (t = 0..T−1)
//! bound = ‖G_T‖_F^{1/2^T} · exp(L / 2^T)
//! ```
//!
//! G_T is (WᴴW)^{2^{T−1}} up to scale, so the bound is the Schatten norm ‖W‖_p with p = 2^{T+1}:
//! σ₁ ≤ bound ≤ r^{1/p} σ₁ for a matrix of rank r ≤ min(m, n), which gives the a-posteriori lower
//! bound bound · min(m, n)^{−1/p} ≤ σ₁ for free. With a spectral gap σ₂/σ₁ = ρ the relative excess
//! is about ρ^p: it squares each step.
//!
//! Status: the f64 CPU reference for dense matrices (bound and its gradient) and for convolutions
//! with circular padding (per-frequency blocks by a direct small DFT), and exact σ₁ by one-sided
//! Jacobi SVD to check them against ([`cpu`]). Kernels, zero padding, the certified and adaptive
//! modes, many shapes in one call and the convolution gradient are not written yet (issue 4).

pub mod cpu;

/// A two-sided enclosure of the spectral norm σ₁ from Gram iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The Schatten-2^{T+1} norm: ≥ σ₁ (up to rounding in this mode).
    pub upper: f64,
    /// upper · min(m, n)^{−1/2^{T+1}}: ≤ σ₁ (up to rounding).
    pub lower: f64,
    /// The iterations run.
    pub iterations: u32,
}

/// The most iterations accepted: beyond ~60 the exponent 1/2^{T+1} is below f64's resolution of
/// any useful bound, and a request for more is a mistake.
pub const MAX_ITERATIONS: u32 = 60;
