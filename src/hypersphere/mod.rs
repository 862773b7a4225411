//! Fused hyperspherical normalization, as SimbaV2 and nGPT use it: row normalization with an
//! explicit eps convention, normalize-lerp-normalize residual updates, and in-place projection
//! of weight matrices onto the sphere. Forward and backward, f32/f16/bf16 storage, f32 arithmetic
//! (f64 for rows whose sums of squares leave f32's safe range), on the GPU ([`gpu`]) and as an
//! independent f64 reference ([`cpu`]).
//!
//! # The operations
//!
//! With N(x) = x · r(x), r given by the [`Eps`] convention:
//!
//! - [`Normalize`]: y = s ⊙ N(x), per row or per group of `group` consecutive channels, with an
//!   optional per-channel scale s. Backward: dx and ds = Σ_rows dy ⊙ N(x), summed in a fixed
//!   order (the same bits on every run for the same shapes on the same GPU).
//! - [`LerpNormalize`]: y = N(a + α ⊙ (N(u) − a)) with a = N(h) (`renorm_h`) or h, and
//!   α = c·p or |c·p| (`abs_alpha`), p a vector of `cols` entries or one scalar. Backward: dh, du
//!   and dp (summed over rows in a fixed order).
//! - [`Projection`]: normalizes every row or every column of weight matrices in place, many
//!   matrices of different shapes and axes in one launch.
//!
//! # Robustness
//!
//! Every finite input gives a correct result, including entries near the f32/bf16 overflow and
//! underflow thresholds (a naive f32 sum of squares overflows at ~1e19 and underflows at ~1e-23):
//! rows whose f32 sum of squares leaves [2^-96, f32::MAX] are recomputed in f64. Results that do
//! not fit the storage type round to infinity (a backward dx of a row far below eps can exceed
//! f32's range). A zero row gets its convention's defined result: 0 for Clamp, Add and Inside
//! with eps > 0 (their backward is g/eps, g/eps and g/√eps), NaN for None and for eps = 0, where
//! r = 1/0 is undefined. A NaN or infinity affects its own row only: its outputs are NaN (an
//! infinite entry gives NaN there and 0 elsewhere in the forward row, as x/‖x‖ does); column sums
//! over rows (dscale, dp) include that row and so become NaN too.
//!
//! # Errors
//!
//! Shapes that disagree, a group that does not divide the row, buffers too short for their shape
//! and stride, zero dimensions, and eps that is negative, non-finite or above 1e30 are errors
//! ([`crate::Error`]), checked before anything is launched.

pub mod cpu;
#[cfg(feature = "emulator")]
mod emulated;
pub mod gpu;

use crate::error::{Error, Result};

pub use gpu::Tier;

/// The eps convention of a row normalization N(x) = x · r with n = ‖x‖₂.
///
/// | variant | r | zero row | used by |
/// |---|---|---|---|
/// | `None` | 1 / n | NaN | nGPT's `justnorm` |
/// | `Clamp(eps)` | 1 / max(n, eps) | 0 | torch `F.normalize`, SimbaV2 (eps = 1e-8) |
/// | `Add(eps)` | 1 / (n + eps) | 0 | some ports |
/// | `Inside(eps)` | (Σx² + eps)^(-1/2) | 0 | fla's l2norm |
///
/// Backward (g the gradient at N(x)): `None`, `Inside` and `Clamp` with n ≥ eps give
/// dx = r (g − N(x)⟨N(x), g⟩); `Clamp` with n < eps gives dx = g / eps; `Add` gives
/// dx = r g − N(x)⟨N(x), g⟩ / n (and r g at n = 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Eps {
    /// r = 1/‖x‖: no protection; a zero row gives NaN.
    None,
    /// r = 1/max(‖x‖, eps).
    Clamp(f32),
    /// r = 1/(‖x‖ + eps).
    Add(f32),
    /// r = (Σx² + eps)^(-1/2).
    Inside(f32),
}

impl Eps {
    /// The kernels' code for this convention and its eps (0 for `None`).
    pub(crate) fn code(self) -> (u32, f32) {
        use crate::params::*;
        match self {
            Eps::None => (SK_EPS_NONE, 0.0),
            Eps::Clamp(e) => (SK_EPS_CLAMP, e),
            Eps::Add(e) => (SK_EPS_ADD, e),
            Eps::Inside(e) => (SK_EPS_INSIDE, e),
        }
    }

    /// The eps value (0 for `None`).
    pub fn value(self) -> f32 {
        self.code().1
    }

    /// Checks eps: finite, ≥ 0 and ≤ 1e30 (the range the f32 fast path is written for).
    pub fn validate(self) -> Result<()> {
        let e = self.value();
        if !(e.is_finite() && (0.0..=1e30).contains(&e)) {
            return Err(Error::param("eps", format!("{e} is not in [0, 1e30]")));
        }
        Ok(())
    }
}

/// Row normalization y = s ⊙ N(x), per row or per group of channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// The eps convention.
    pub eps: Eps,
    /// Normalize each run of `group` consecutive channels separately (per-head q/k); `None`
    /// normalizes whole rows. Must divide the row length.
    pub group: Option<usize>,
    /// Kernel tier (GPU only); [`Tier::Auto`] picks it from the segment length.
    pub tier: Tier,
}

impl Normalize {
    /// Whole-row normalization with the given convention.
    pub fn new(eps: Eps) -> Self {
        Normalize {
            eps,
            group: None,
            tier: Tier::Auto,
        }
    }

    /// Per-group normalization: each run of `group` consecutive channels is a unit vector.
    pub fn groups(mut self, group: usize) -> Self {
        self.group = Some(group);
        self
    }

    /// Forces a kernel tier (tests and benchmarks); the default picks it from the length.
    pub fn with_tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// The segment length for rows of `cols` channels, checked.
    pub fn segment(&self, cols: usize) -> Result<usize> {
        let g = self.group.unwrap_or(cols);
        if g == 0 || cols == 0 || !cols.is_multiple_of(g) {
            return Err(Error::shape(format!(
                "group {g} does not divide the row length {cols}"
            )));
        }
        Ok(g)
    }
}

/// Normalize-lerp-normalize: y = N(a + α ⊙ (N(u) − a)), a = N(h) or h, α = c·p or |c·p|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LerpNormalize {
    /// The eps convention of all three normalizations.
    pub eps: Eps,
    /// a = N(h) when true (nGPT), a = h when false (SimbaV2, whose h is already unit).
    pub renorm_h: bool,
    /// α = |c·p| when true (nGPT's lr), α = c·p when false.
    pub abs_alpha: bool,
    /// The constant c in α = c·p (nGPT: 0.05 / base_scale; SimbaV2: 1).
    pub c: f32,
    /// Kernel tier (GPU only); [`Tier::Auto`] picks it from the row length.
    pub tier: Tier,
}

impl LerpNormalize {
    /// nGPT's residual update: a = N(h), α = |c·p|, no eps.
    pub fn ngpt(c: f32) -> Self {
        LerpNormalize {
            eps: Eps::None,
            renorm_h: true,
            abs_alpha: true,
            c,
            tier: Tier::Auto,
        }
    }

    /// SimbaV2's block output: a = h, α = p, clamp eps 1e-8.
    pub fn simbav2() -> Self {
        LerpNormalize {
            eps: Eps::Clamp(1e-8),
            renorm_h: false,
            abs_alpha: false,
            c: 1.0,
            tier: Tier::Auto,
        }
    }

    /// Forces a kernel tier (tests and benchmarks); the default picks it from the length.
    pub fn with_tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// Checks eps and c.
    pub fn validate(&self) -> Result<()> {
        self.eps.validate()?;
        if !self.c.is_finite() {
            return Err(Error::param("c", format!("{} is not finite", self.c)));
        }
        Ok(())
    }
}

/// Which lines of a weight matrix a [`Projection`] normalizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Every row: each output unit's incoming weights in a PyTorch (out, in) layout.
    Rows,
    /// Every column (nGPT's output projections, normalized along the embedding dimension).
    Cols,
}

/// In-place projection of weight matrices onto the unit sphere along rows or columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// The eps convention.
    pub eps: Eps,
}

impl Projection {
    /// A projection with the given convention.
    pub fn new(eps: Eps) -> Self {
        Projection { eps }
    }
}
