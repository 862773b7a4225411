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
//! σ₁ ≤ bound ≤ r^{1/p} σ₁ for a matrix of rank r ≤ min(m, n). With a spectral gap σ₂/σ₁ = ρ the
//! relative excess is about ρ^p: it squares each step.
//!
//! The lower bound is a-posteriori and free: σ₁^{2^T} = ‖G_T‖₂ e^{…} ≥ max_j ‖G_T e_j‖ e^{…},
//! the largest column norm of the last Gram power. It is never below the rank bound
//! bound · min(m, n)^{−1/p} (the largest of k column norms is at least their RMS) and is much
//! tighter once the top singular value dominates: upper/lower = (‖G_T‖_F / max_j ‖G_T e_j‖)^{1/2^T}
//! tends to 1, which is the adaptive mode's stopping test ([`Iterations::Adaptive`]).
//!
//! # Kernels
//! [`gpu::dense_bounds`] bounds many matrices of any shapes in one call (every layer of a
//! network). Three tiers, chosen per matrix from its smaller side k:
//! - k ≤ 32: one warp per matrix, eight to a block;
//! - k ≤ [`MAX_ON_CHIP_K`]: one block per matrix; in both on-chip tiers the Gram power stays in
//!   shared memory for all T steps (one launch for all on-chip matrices; for dense bounds, the
//!   sides k ≤ 16 (warps) and 32 < k ≤ 64 (blocks) get kernels of one tier each, which fit more
//!   blocks on an SM, so a batch mixing sides takes up to three launches);
//! - larger: the large tier keeps M_t in a device workspace (two k × k matrices per matrix,
//!   allocated by the device batch at the first call that needs it) and runs each step as one
//!   launch over all large matrices, one 256-thread block per upper tile (128 wide in f32
//!   arithmetic, 64 otherwise), each tile mirrored; about 2T + 3 launches in all.
//!
//! Every Gram power is rescaled by an exact power of two and stored exactly Hermitian. The
//! [`Precision::Certified`] mode computes in f64 and carries a rounding-error bound through the
//! iteration (see kernels/gram.cu; the same analysis for every tier), so the upper bound is ≥
//! the exact σ₁ of the stored matrix despite rounding; [`Precision::Fast`] uses f32 arithmetic
//! for f32/f16/bf16 storage and is within a few f32 ulps of the exact Schatten norm, on either
//! side.
//!
//! [`gpu::conv_bounds`] bounds circular convolution layers the same way on their frequency
//! blocks (complex, formed by a direct DFT of the kernel: on chip, or into the workspace for
//! the large tier; the on-chip limit is 64 in f64 arithmetic). [`gpu::dense_bounds_and_gradients`]
//! and [`gpu::conv_bounds_and_gradients`] add the gradients of the upper bounds, any size (on
//! chip up to 128, or 64 in f64 arithmetic and for convolutions; above, the large tier keeps
//! P = M₁⋯M_T in the workspace too). [`zero_padding`] has the zero-padding bounds (CPU), [`cpu`]
//! the f64 references of everything.

pub mod cpu;
pub mod gpu;
pub mod zero_padding;

#[cfg(feature = "emulator")]
mod emulated;

use crate::error::{Error, Result};
use crate::params::{
    SK_GRAM_CERTIFIED, SK_GRAM_CONVERGED, SK_GRAM_LARGE_CHUNKS, SK_GRAM_LARGE_STATE_DOUBLES,
    SK_GRAM_LARGE_TILE, SK_GRAM_LARGE_TILE_WIDE, SK_GRAM_MAX_K, SK_GRAM_MAX_K_COMPLEX64,
    SK_GRAM_MAX_K_GRAD64, SK_GRAM_MAX_TAPS, SK_GRAM_SMALL_K, SK_GRAM_WARP_K, sk_gram_bound,
    sk_gram_conv_item, sk_gram_large_item, sk_gram_matrix,
};

/// A two-sided enclosure of the spectral norm σ₁ from Gram iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The Schatten-2^{T+1} norm: ≥ σ₁ (up to rounding, or rigorously in certified mode).
    pub upper: f64,
    /// The column-norm bound of the last Gram power: ≤ σ₁ (up to rounding).
    pub lower: f64,
    /// The iterations run.
    pub iterations: u32,
}

/// The most iterations accepted: beyond ~60 the exponent 1/2^{T+1} is below f64's resolution of
/// any useful bound, and a request for more is a mistake.
pub const MAX_ITERATIONS: u32 = 60;

/// The largest smaller side min(m, n) the on-chip kernels handle (the Gram power lives in one
/// block's shared memory).
pub const MAX_ON_CHIP_K: usize = SK_GRAM_MAX_K as usize;

/// The arithmetic of a Gram-iteration kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// f32 arithmetic for f32, f16 and bf16 storage (f64 for f64 storage), sums of squares in
    /// f64. Not a certificate: the upper bound may fall below σ₁ by a few f32 ulps when the
    /// Schatten excess is smaller than that (a rank-1 matrix, a large gap and a large T).
    Fast,
    /// f64 arithmetic whatever the storage; same caveat at f64's ulp.
    F64,
    /// f64 arithmetic and a rigorous rounding-error bound carried through every step (kernels/
    /// gram.cu documents the analysis): the upper bound is ≥ the exact σ₁ of the stored matrix.
    /// The inflation is about (k² + l) · 2^-53 relative in the worst case. The lower bound is
    /// not certified.
    Certified,
}

/// How many iterations to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Iterations {
    /// Exactly T steps (T = 0 gives the Frobenius norm and the largest column norm).
    Fixed(u32),
    /// Step until upper / lower ≤ 1 + `tolerance`, at most `max` steps (at least one).
    Adaptive {
        /// The relative width of the enclosure to reach, > 0.
        tolerance: f64,
        /// The most steps, 1..=[`MAX_ITERATIONS`].
        max: u32,
    },
}

impl Iterations {
    /// (T or T_max, tolerance or 0), validated.
    pub(crate) fn check(self) -> Result<(u32, f64)> {
        match self {
            Iterations::Fixed(t) if t > MAX_ITERATIONS => Err(Error::param(
                "iterations",
                format!("{t} > {MAX_ITERATIONS}"),
            )),
            Iterations::Fixed(t) => Ok((t, 0.0)),
            Iterations::Adaptive { tolerance, max } => {
                if !(tolerance > 0.0 && tolerance.is_finite()) {
                    return Err(Error::param(
                        "tolerance",
                        format!("{tolerance} is not a positive finite number"),
                    ));
                }
                if max == 0 || max > MAX_ITERATIONS {
                    return Err(Error::param(
                        "iterations",
                        format!("adaptive at most {max} steps: must be 1..={MAX_ITERATIONS}"),
                    ));
                }
                Ok((max, tolerance))
            }
        }
    }
}

/// The result of one matrix as the kernels write it (24 bytes, C layout; a device buffer of
/// these is the output of [`gpu::dense_bounds`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeviceBound {
    /// ≥ σ₁ (see [`Precision`] for how strictly).
    pub upper: f64,
    /// ≤ σ₁ (up to rounding).
    pub lower: f64,
    /// The iterations run.
    pub iterations: u32,
    /// Bit 0: certified; bit 1: the adaptive tolerance was reached.
    pub flags: u32,
}

// The Rust mirror must match the kernels' struct field by field.
const _: () = {
    assert!(std::mem::size_of::<DeviceBound>() == std::mem::size_of::<sk_gram_bound>());
    assert!(std::mem::offset_of!(DeviceBound, upper) == std::mem::offset_of!(sk_gram_bound, upper));
    assert!(std::mem::offset_of!(DeviceBound, lower) == std::mem::offset_of!(sk_gram_bound, lower));
    assert!(
        std::mem::offset_of!(DeviceBound, iterations)
            == std::mem::offset_of!(sk_gram_bound, iterations)
    );
    assert!(std::mem::offset_of!(DeviceBound, flags) == std::mem::offset_of!(sk_gram_bound, flags));
};

// SAFETY: DeviceBound is repr(C) plain old data (two f64 and two u32, no padding), so any bit
// pattern is a valid value, all-zero included, and it can be copied to and from the device.
unsafe impl cudarc::driver::DeviceRepr for DeviceBound {}
// SAFETY: as above: all-zero bits are a valid DeviceBound.
unsafe impl cudarc::driver::ValidAsZeroBits for DeviceBound {}

impl DeviceBound {
    /// The enclosure.
    pub fn bound(&self) -> Bound {
        Bound {
            upper: self.upper,
            lower: self.lower,
            iterations: self.iterations,
        }
    }
    /// Whether the upper bound is certified against rounding.
    pub fn certified(&self) -> bool {
        self.flags & SK_GRAM_CERTIFIED != 0
    }
    /// Whether the adaptive tolerance was reached.
    pub fn converged(&self) -> bool {
        self.flags & SK_GRAM_CONVERGED != 0
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A storage type of the Gram kernels: f32, f64, [`half::f16`] or [`half::bf16`].
pub trait Storage:
    cudarc::driver::DeviceRepr
    + Copy
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
    + sealed::Sealed
{
    /// The name in kernel names (`f32`, `f64`, `f16`, `bf16`).
    const NAME: &'static str;
    /// Widens exactly to f64.
    fn to_f64(self) -> f64;
    /// Rounds an f64 to this type (nearest, ties to even).
    fn from_f64(v: f64) -> Self;
}

impl Storage for f32 {
    const NAME: &'static str = "f32";
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl Storage for f64 {
    const NAME: &'static str = "f64";
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl Storage for half::f16 {
    const NAME: &'static str = "f16";
    fn to_f64(self) -> f64 {
        half::f16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        half::f16::from_f64(v)
    }
}
impl Storage for half::bf16 {
    const NAME: &'static str = "bf16";
    fn to_f64(self) -> f64 {
        half::bf16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        half::bf16::from_f64(v)
    }
}

/// How one launch serves its items: the warp tier's item indices first (smaller side ≤ 32, one
/// warp each; those of side ≤ 16 leading), then the block tier's (one block each) in ascending
/// side, so the items that fit on chip at a given limit are a prefix and the large tier takes
/// the rest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Schedule {
    pub order: Vec<u32>,
    pub warp_items: u32,
    /// The leading warp items of side ≤ `SK_GRAM_SMALL_K`: dense bounds serve them with the
    /// small-side kernel, which fits more warps on an SM.
    pub small_items: u32,
    /// The block tier's sides, ascending (parallel to `order[warp_items..]`).
    block_k: Vec<u32>,
}

impl Schedule {
    /// From each item's smaller side k.
    fn new(ks: impl Iterator<Item = usize>) -> Self {
        Self::of(ks.enumerate().map(|(i, k)| (i as u32, k)), true)
    }

    /// From (item index, smaller side) pairs; `warps`: whether small items get a warp each.
    fn of(items: impl Iterator<Item = (u32, usize)>, warps: bool) -> Self {
        let (mut warp, mut warp_rest, mut block) = (Vec::new(), Vec::new(), Vec::new());
        for (i, k) in items {
            if warps && k <= SK_GRAM_SMALL_K as usize {
                warp.push(i);
            } else if warps && k <= SK_GRAM_WARP_K as usize {
                warp_rest.push(i);
            } else {
                block.push((k as u32, i));
            }
        }
        block.sort_unstable();
        let small_items = warp.len() as u32;
        warp.extend(warp_rest);
        let warp_items = warp.len() as u32;
        warp.extend(block.iter().map(|b| b.1));
        Schedule {
            order: warp,
            warp_items,
            small_items,
            block_k: block.iter().map(|b| b.0).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// The number of block-tier items with side ≤ `max_k` (a prefix: the tier is ascending),
    /// e.g. those on chip at the limit `max_k` (the large tier takes the rest).
    pub(crate) fn block_items_up_to(&self, max_k: u32) -> u32 {
        self.block_k.partition_point(|&k| k <= max_k) as u32
    }

    /// The side of block-tier item `j`.
    pub(crate) fn block_side(&self, j: u32) -> u32 {
        self.block_k[j as usize]
    }
}

/// The large tier's table (kernels/params.h): the block-tier items above the smallest on-chip
/// limit, ascending in k, each with its workspace offsets (sized for either tile width) and
/// its first GRAM block for both widths. A call serves the suffix above its own limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct LargeTable {
    pub entries: Vec<sk_gram_large_item>,
    ks: Vec<u32>,
    /// Totals past the last entry: doubles, elements, tiles, wide tiles.
    end: sk_gram_large_item,
}

/// One call's part of a [`LargeTable`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LargeSuffix {
    pub start: usize,
    pub count: u32,
    /// GRAM blocks (upper tiles of every served item, at the call's tile width).
    pub tiles: u32,
    /// GRADX blocks (tiles of every served item's l × k gradient).
    pub grad_tiles: u32,
    /// Workspace: doubles, field elements, and gradients' field elements.
    pub doubles: usize,
    pub elems: usize,
    pub grad_elems: usize,
}

impl LargeTable {
    /// From the schedule and each item's (k, l, group), for items with k > `min_limit`; items
    /// of one group (a convolution layer's blocks) share the gradient buffers.
    fn new(
        schedule: &Schedule,
        item: impl Fn(u32) -> (u32, u32, u32),
        conv: bool,
        min_limit: u32,
    ) -> Result<Self> {
        let first = schedule.block_k.partition_point(|&k| k <= min_limit);
        let mut table = LargeTable::default();
        let mut end = sk_gram_large_item::default();
        let mut groups = std::collections::HashMap::new();
        let (mut tiles, mut wide, mut grad, mut grad_wide) = (0u64, 0u64, 0u64, 0u64);
        for &index in &schedule.order[schedule.warp_items as usize + first..] {
            let (k, l, group) = item(index);
            // (upper tiles, doubles, G tiles) at tile width tb: see kernels/params.h.
            let layout = |tb: u64| {
                let nb = u64::from(k).div_ceil(tb);
                let t = nb * (nb + 1) / 2;
                (t, 3 * t + nb * nb * tb, u64::from(l).div_ceil(tb) * nb)
            };
            let (t64, d64, g64) = layout(u64::from(SK_GRAM_LARGE_TILE));
            let (t128, d128, g128) = layout(u64::from(SK_GRAM_LARGE_TILE_WIDE));
            let kp = u64::from(k).div_ceil(u64::from(SK_GRAM_LARGE_TILE_WIDE))
                * u64::from(SK_GRAM_LARGE_TILE_WIDE);
            let grad_elems = *groups.entry(group).or_insert_with(|| {
                let at = end.grad_elems;
                end.grad_elems += 2 * kp * kp;
                at
            });
            table.entries.push(sk_gram_large_item {
                doubles: end.doubles,
                elems: end.elems,
                grad_elems,
                index,
                first_tile: tiles as u32,
                first_wide: wide as u32,
                first_grad: grad as u32,
                first_grad_wide: grad_wide as u32,
                reserved: 0,
            });
            table.ks.push(k);
            end.doubles +=
                u64::from(SK_GRAM_LARGE_STATE_DOUBLES + 2 * SK_GRAM_LARGE_CHUNKS) + d64.max(d128);
            end.elems += 2 * kp * kp + if conv { u64::from(l) * kp } else { 0 };
            tiles += t64;
            wide += t128;
            grad += g64;
            grad_wide += g128;
            if tiles.max(grad) > MAX_GRID_BLOCKS || end.doubles.max(end.elems) > 1 << 48 {
                return Err(Error::TooLarge(format!(
                    "the large matrices need {} tile blocks and {} workspace elements",
                    tiles.max(grad),
                    end.elems
                )));
            }
        }
        end.first_tile = tiles as u32;
        end.first_wide = wide as u32;
        end.first_grad = grad as u32;
        end.first_grad_wide = grad_wide as u32;
        table.end = end;
        Ok(table)
    }

    /// The entries with k > `limit`, at tile width `wide` or not.
    pub(crate) fn suffix(&self, limit: u32, wide: bool) -> LargeSuffix {
        let start = self.ks.partition_point(|&k| k <= limit);
        let base = self.entries.get(start).copied().unwrap_or(self.end);
        let (tiles, grad_tiles) = if wide {
            (
                self.end.first_wide - base.first_wide,
                self.end.first_grad_wide - base.first_grad_wide,
            )
        } else {
            (
                self.end.first_tile - base.first_tile,
                self.end.first_grad - base.first_grad,
            )
        };
        LargeSuffix {
            start,
            count: (self.entries.len() - start) as u32,
            tiles,
            grad_tiles,
            doubles: (self.end.doubles - base.doubles) as usize,
            elems: (self.end.elems - base.elems) as usize,
            grad_elems: (self.end.grad_elems - base.grad_elems) as usize,
        }
    }
}

/// The most blocks of one GRAM launch.
const MAX_GRID_BLOCKS: u64 = (1 << 31) - 1;

fn side_u32(what: &str, i: usize, v: usize) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::TooLarge(format!("{what} {i}: a side of {v} is not below 2^32")))
}

/// Which matrices one call bounds, where each starts in the storage buffer, and how the launch
/// serves them: built once on the host (for a network, once per architecture), then uploaded
/// with [`gpu::DeviceDenseBatch::new`] and reused every step.
#[derive(Debug, Clone)]
pub struct DenseBatch {
    pub(crate) matrices: Vec<sk_gram_matrix>,
    pub(crate) schedule: Schedule,
    pub(crate) large: LargeTable,
    /// Whether no two matrices share an element (required for gradients).
    pub(crate) disjoint: bool,
    /// Elements of storage the matrices span.
    span: usize,
}

impl DenseBatch {
    /// `count` matrices of `rows × cols`, packed one after another (row-major, no gaps).
    ///
    /// Errors: as [`DenseBatch::packed`].
    pub fn uniform(count: usize, rows: usize, cols: usize) -> Result<Self> {
        Self::packed(&vec![(rows, cols); count])
    }

    /// Matrices of the given (rows, cols) shapes, packed one after another in one buffer.
    ///
    /// Errors: as [`DenseBatch::with_offsets`].
    pub fn packed(shapes: &[(usize, usize)]) -> Result<Self> {
        let mut offset = 0usize;
        let mut list = Vec::with_capacity(shapes.len());
        for &(rows, cols) in shapes {
            list.push((offset, rows, cols));
            offset = rows
                .checked_mul(cols)
                .and_then(|n| offset.checked_add(n))
                .ok_or_else(|| Error::TooLarge(format!("matrices up to {rows} x {cols}")))?;
        }
        Self::with_offsets(&list)
    }

    /// Matrices given as (offset, rows, cols): matrix i is row-major at element `offset` of the
    /// storage buffer (they may overlap or leave gaps; a network's parameters in one buffer).
    /// A matrix with a zero side is allowed (its bounds are 0).
    ///
    /// Errors: a side above 2^32 − 1, more than 2^31 − 1 matrices, an end offset that
    /// overflows, or large matrices (smaller side above [`MAX_ON_CHIP_K`]) needing more than
    /// 2^31 − 1 tile blocks.
    pub fn with_offsets(list: &[(usize, usize, usize)]) -> Result<Self> {
        if list.len() > MAX_ITEMS {
            return Err(Error::TooLarge(format!("{} matrices", list.len())));
        }
        let mut matrices = Vec::with_capacity(list.len());
        let mut span = 0usize;
        for (i, &(offset, rows, cols)) in list.iter().enumerate() {
            let (r, c) = (side_u32("matrix", i, rows)?, side_u32("matrix", i, cols)?);
            let end = rows
                .checked_mul(cols)
                .and_then(|n| n.checked_add(offset))
                .ok_or_else(|| Error::TooLarge(format!("matrix {i} ends beyond usize")))?;
            span = span.max(end);
            matrices.push(sk_gram_matrix {
                offset: offset as u64,
                rows: r,
                cols: c,
            });
        }
        let schedule = Schedule::new(matrices.iter().map(|m| m.rows.min(m.cols) as usize));
        let large = LargeTable::new(
            &schedule,
            |i| {
                let m = &matrices[i as usize];
                (m.rows.min(m.cols), m.rows.max(m.cols), i)
            },
            false,
            // Gradients in f64 arithmetic take the large tier above 64.
            SK_GRAM_MAX_K_GRAD64,
        )?;
        let mut ranges: Vec<(u64, u64)> = matrices
            .iter()
            .map(|m| (m.offset, m.offset + u64::from(m.rows) * u64::from(m.cols)))
            .filter(|r| r.1 > r.0)
            .collect();
        ranges.sort_unstable();
        let disjoint = ranges.windows(2).all(|p| p[0].1 <= p[1].0);
        Ok(DenseBatch {
            matrices,
            schedule,
            large,
            disjoint,
            span,
        })
    }

    /// The number of matrices.
    pub fn len(&self) -> usize {
        self.matrices.len()
    }

    /// Whether there are no matrices.
    pub fn is_empty(&self) -> bool {
        self.matrices.is_empty()
    }

    /// The storage elements the matrices span (the buffer must hold at least this many).
    pub fn span(&self) -> usize {
        self.span
    }

    /// (rows, cols) of matrix i.
    pub fn shape(&self, i: usize) -> Option<(usize, usize)> {
        self.matrices
            .get(i)
            .map(|m| (m.rows as usize, m.cols as usize))
    }
}

/// The most items (matrices, or frequency blocks of all layers) one launch serves.
const MAX_ITEMS: usize = (1 << 31) - 1;

/// The largest kernel side the convolution kernels accept.
pub const MAX_TAPS: usize = SK_GRAM_MAX_TAPS as usize;

/// The convolution layers one call bounds (circular padding, stride 1): each a kernel
/// [c_out, c_in, taps, taps] (row-major) at an element offset of the storage buffer, on n × n
/// inputs. Every layer becomes n (n/2 + 1) frequency blocks of c_out × c_in complex entries (a
/// real kernel's other half-spectrum blocks are conjugates, with the same singular values), all
/// bounded in one launch; a second one takes each layer's max. Built once per network.
#[derive(Debug, Clone)]
pub struct ConvBatch {
    pub(crate) layers: Vec<(usize, cpu::ConvShape)>,
    pub(crate) items: Vec<sk_gram_conv_item>,
    /// First item of each layer, and the total at the end.
    pub(crate) layer_start: Vec<u32>,
    pub(crate) schedule: Schedule,
    pub(crate) large: LargeTable,
    /// Gradient launches: one team per non-empty layer (warp tier first), or a block each.
    pub(crate) grad_schedule: Schedule,
    pub(crate) grad_blocks: Schedule,
    /// Whether no two kernels share an element (required for gradients).
    disjoint: bool,
    span: usize,
}

impl ConvBatch {
    /// Layers given as (offset, shape).
    ///
    /// Errors: taps > n, taps > [`MAX_TAPS`], sides above 2^32 − 1, more than 2^31 − 1
    /// frequency blocks in all (or tile blocks of the large tier), or offsets that overflow.
    pub fn new(layers: &[(usize, cpu::ConvShape)]) -> Result<Self> {
        let mut items = Vec::new();
        let mut layer_start = vec![0u32];
        let mut span = 0usize;
        for (i, &(offset, s)) in layers.iter().enumerate() {
            let cpu::ConvShape { c_out, c_in, k, n } = s;
            if k > n || k > MAX_TAPS {
                return Err(Error::shape(format!(
                    "layer {i}: a {k} x {k} kernel on {n} x {n} inputs (taps must be <= n and \
                     <= {MAX_TAPS})"
                )));
            }
            let len = c_out
                .checked_mul(c_in)
                .and_then(|v| v.checked_mul(k * k))
                .and_then(|v| v.checked_add(offset))
                .ok_or_else(|| Error::TooLarge(format!("layer {i} ends beyond usize")))?;
            span = span.max(len);
            let freqs = n.saturating_mul(n / 2 + 1);
            if freqs > MAX_ITEMS - items.len() {
                return Err(Error::TooLarge(format!(
                    "more than {MAX_ITEMS} frequency blocks in all"
                )));
            }
            let (co, ci) = (side_u32("layer", i, c_out)?, side_u32("layer", i, c_in)?);
            let (taps, nn) = (k as u32, side_u32("layer", i, n)?);
            if c_out * c_in > 0 {
                for u in 0..nn {
                    for v in 0..=nn / 2 {
                        items.push(sk_gram_conv_item {
                            offset: offset as u64,
                            c_out: co,
                            c_in: ci,
                            taps,
                            n: nn,
                            u,
                            v,
                        });
                    }
                }
            }
            layer_start.push(items.len() as u32);
        }
        let schedule = Schedule::new(items.iter().map(|it| it.c_out.min(it.c_in) as usize));
        let large = LargeTable::new(
            &schedule,
            |i| {
                let it = &items[i as usize];
                let layer = layer_start.partition_point(|&s| s <= i) as u32 - 1;
                (it.c_out.min(it.c_in), it.c_out.max(it.c_in), layer)
            },
            true,
            SK_GRAM_MAX_K_COMPLEX64,
        )?;
        let mut ranges: Vec<(usize, usize)> = layers
            .iter()
            .map(|&(o, s)| (o, o + s.c_out * s.c_in * s.k * s.k))
            .filter(|r| r.1 > r.0)
            .collect();
        ranges.sort_unstable();
        let disjoint = ranges.windows(2).all(|p| p[0].1 <= p[1].0);
        let grad_layers = || {
            layers
                .iter()
                .enumerate()
                .filter(|(_, (_, s))| s.c_out * s.c_in > 0)
                .map(|(i, (_, s))| (i as u32, s.c_out.min(s.c_in)))
        };
        Ok(ConvBatch {
            layers: layers.to_vec(),
            items,
            layer_start,
            schedule,
            large,
            grad_schedule: Schedule::of(grad_layers(), true),
            grad_blocks: Schedule::of(grad_layers(), false),
            disjoint,
            span,
        })
    }

    /// Layers packed one after another.
    ///
    /// Errors: as [`ConvBatch::new`].
    pub fn packed(shapes: &[cpu::ConvShape]) -> Result<Self> {
        let mut offset = 0usize;
        let mut list = Vec::with_capacity(shapes.len());
        for s in shapes {
            list.push((offset, *s));
            offset = s
                .c_out
                .checked_mul(s.c_in)
                .and_then(|v| v.checked_mul(s.k * s.k))
                .and_then(|v| v.checked_add(offset))
                .ok_or_else(|| Error::TooLarge("layers beyond usize".into()))?;
        }
        Self::new(&list)
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Whether no two kernels share an element of the storage buffer (gradients need it).
    pub fn disjoint(&self) -> bool {
        self.disjoint
    }

    /// The frequency blocks of all layers.
    pub fn blocks(&self) -> usize {
        self.items.len()
    }

    /// The storage elements the kernels span.
    pub fn span(&self) -> usize {
        self.span
    }

    /// (offset, shape) of layer i.
    pub fn layer(&self, i: usize) -> Option<(usize, cpu::ConvShape)> {
        self.layers.get(i).copied()
    }
}
