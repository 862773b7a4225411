//! Simplex random features: coupled random projections, positive random features for the
//! softmax and Gaussian kernels, and FAVOR+ linear attention built on them.
//!
//! # Projections
//!
//! A [`ProjectionSpec`] draws W (m x d) on the host from a seed ([`projection`]): i.i.d.
//! Gaussian rows, orthogonal blocks (ORF), simplex blocks (SimRF, Reid et al. 2023), the
//! norm-dependent SimRF+ refinement, or full simplex blocks of d + 1 directions; with a Haar
//! rotation (Householder QR with the sign fix) or a fast Hadamard-sign rotation. Every row is
//! marginally N(0, I_d), so every estimate below is unbiased; the couplings lower its variance.
//! [`Redraw`] maps a training step to a draw, so features can be redrawn every N steps
//! reproducibly.
//!
//! # Positive random features
//!
//! For a kernel with exponent constant c (c = 1/2 for the softmax kernel exp(x·y), c = 1 for
//! the Gaussian kernel exp(−|x−y|²/2)) and inputs scaled first by `input_scale` (Performer uses
//! d^{−1/4} so that q·k/√d is what the kernel sees):
//!
//! φ(x)_i = m^{−1/2} (exp(w_i·x − c|x|² − shift) + eps),  i = 0 … m−1,
//!
//! so that E[φ(x)·φ(y)] = K(x, y) when shift = eps = 0. The `shift` is the stabilizer
//! ([`Stabilizer`]): 0, the row's largest exponent max_i(w_i·x − c|x|²) (so its largest
//! feature is exactly m^{−1/2}(1 + eps) and nothing overflows or underflows to all zeros), or
//! the largest exponent over a group of rows (the keys of one sequence). A shift multiplies a
//! row's features by exp(−shift), which cancels in attention's normalized output. Gradients
//! treat the shift as a constant, as Performer does; that is exact for attention when eps = 0.
//! Unlike Performer, the shift includes the −c|x|² term: Performer subtracts max_i w_i·x only,
//! so a row with large |x| can underflow to all-zero features and a 0/0 output.
//!
//! Kernel estimates K̂(x, y) = φ(x)·φ(y) for batches of pairs, without forming φ:
//! [`cpu::estimate_pairs`] (f64) and [`gpu::log_estimate_pairs`] (log K̂ in f32, for MSE
//! studies over many pairs and draws of W); [`KernelKind::exact`] gives K itself.
//!
//! # FAVOR+ attention
//!
//! With Q' = φ(Q) and K' = φ(K) (queries stabilized per row, keys over their sequence):
//! non-causal out = Q'(K'^T V) / (Q'(K'^T 1) + guard); causal out_i = Q'_i S_i / (Q'_i z_i +
//! guard) with S_i = Σ_{j≤i} K'_j V_j^T and z_i = Σ_{j≤i} K'_j.

pub mod cpu;
#[cfg(feature = "emulator")]
mod emulated;
pub mod gpu;
pub mod projection;

#[cfg(feature = "emulator")]
pub use emulated::log_estimate_pairs_emulated;
pub use projection::{Coupling, Projection, ProjectionSpec, Rotation, SignFix};

use crate::error::{Error, Result};

/// The kernel the features estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// K(x, y) = exp(x·y); exponent constant c = 1/2.
    Softmax,
    /// K(x, y) = exp(−|x−y|²/2); exponent constant c = 1.
    Gaussian,
}

impl KernelKind {
    /// c in exp(w·x − c|x|²).
    pub const fn norm_coefficient(self) -> f64 {
        match self {
            KernelKind::Softmax => 0.5,
            KernelKind::Gaussian => 1.0,
        }
    }

    /// The exact kernel value.
    pub fn exact(self, x: &[f64], y: &[f64]) -> f64 {
        match self {
            KernelKind::Softmax => x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>().exp(),
            KernelKind::Gaussian => {
                (-0.5 * x.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>()).exp()
            }
        }
    }

    /// Short name for kernel names and reports.
    pub const fn name(self) -> &'static str {
        match self {
            KernelKind::Softmax => "softmax",
            KernelKind::Gaussian => "gaussian",
        }
    }
}

/// The shift subtracted from a row's exponents before exp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stabilizer {
    /// No shift: the unbiased features themselves (may overflow for large |w·x|).
    None,
    /// The row's largest exponent (queries).
    Row,
    /// The largest exponent over each group of `rows` consecutive rows (the keys of a
    /// sequence); NaN rows are ignored by the maximum, so they affect only themselves.
    Group {
        /// Rows per group (the sequence length); must divide the number of rows.
        rows: usize,
    },
}

/// A positive random feature map: kernel, stabilizer, eps and input scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureMap {
    /// The kernel estimated.
    pub kernel: KernelKind,
    /// The shift of each row's exponents.
    pub stabilizer: Stabilizer,
    /// Added to every exp before the m^{−1/2} factor (≥ 0, finite).
    pub eps: f64,
    /// Inputs are multiplied by this first (finite, > 0); 1 for the plain kernel.
    pub input_scale: f64,
}

impl FeatureMap {
    /// The unbiased features of `kernel`: no shift, no eps, no scaling.
    pub fn unbiased(kernel: KernelKind) -> Self {
        FeatureMap {
            kernel,
            stabilizer: Stabilizer::None,
            eps: 0.0,
            input_scale: 1.0,
        }
    }

    /// Checks eps, the scale and the group size against `rows`.
    pub fn validate(&self, rows: usize) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::param(
                "eps",
                format!("must be finite and >= 0, not {}", self.eps),
            ));
        }
        if !(self.input_scale.is_finite() && self.input_scale > 0.0) {
            return Err(Error::param(
                "input_scale",
                format!("must be finite and > 0, not {}", self.input_scale),
            ));
        }
        if let Stabilizer::Group { rows: g } = self.stabilizer
            && (g == 0 || !rows.is_multiple_of(g))
        {
            return Err(Error::shape(format!(
                "groups of {g} rows do not divide {rows} rows"
            )));
        }
        Ok(())
    }
}

/// Redraws features every `every` steps: the draw for training step s is spec.draw(s / every).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redraw {
    /// What is drawn.
    pub spec: ProjectionSpec,
    /// Steps between redraws (≥ 1).
    pub every: u64,
}

impl Redraw {
    /// A schedule; errors when `every` is 0.
    pub fn new(spec: ProjectionSpec, every: u64) -> Result<Self> {
        if every == 0 {
            return Err(Error::param("every", "redraw interval must be at least 1"));
        }
        Ok(Redraw { spec, every })
    }

    /// The draw index in force at training step `step`.
    pub fn draw_index(&self, step: u64) -> u64 {
        step / self.every
    }

    /// Whether step `step` starts a new draw (so a caller uploads W again).
    pub fn is_redraw_step(&self, step: u64) -> bool {
        step.is_multiple_of(self.every)
    }

    /// The projection in force at step `step`; the same for every step of one interval.
    pub fn projection(&self, step: u64) -> Projection {
        self.spec.draw(self.draw_index(step))
    }
}

/// Attention inputs: `heads` independent sequences of `len` positions; queries and keys have
/// `dim` components, values `value_dim`, all row-major [heads, len, ·].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// batch x heads, flattened.
    pub heads: usize,
    /// Sequence length L.
    pub len: usize,
    /// Query/key head dimension.
    pub dim: usize,
    /// Value head dimension.
    pub value_dim: usize,
}

/// FAVOR+ options: the kernel features (softmax kernel, input scale, eps), the denominator
/// guard and causality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Favor {
    /// Multiplies q and k before the features (Performer: dim^{−1/4}).
    pub input_scale: f64,
    /// Added to each feature after exp.
    pub eps: f64,
    /// Added to each denominator (≥ 0).
    pub guard: f64,
    /// Position i attends to j ≤ i only.
    pub causal: bool,
}

impl Favor {
    /// The query feature map (per-row shift).
    pub fn query_map(&self) -> FeatureMap {
        FeatureMap {
            kernel: KernelKind::Softmax,
            stabilizer: Stabilizer::Row,
            eps: self.eps,
            input_scale: self.input_scale,
        }
    }

    /// The key feature map (shift over each sequence of `len` keys).
    pub fn key_map(&self, len: usize) -> FeatureMap {
        FeatureMap {
            stabilizer: Stabilizer::Group { rows: len },
            ..self.query_map()
        }
    }
}
