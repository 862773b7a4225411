//! GPU side of the hypersphere family: which kernel and tier runs a call, how large its grid is,
//! and the public launch methods. Planning (validation, tier, grid, parameter struct) is
//! separate from launching so that the same plan runs on a CUDA stream or, in tests, on the CPU
//! emulator.
//!
//! Tiers (kernels/hypersphere.cu): a row segment of `len` elements is owned by a team of TPS
//! threads holding it in registers when `len` fits (TPS from [`VECTOR_TIERS`] or
//! [`SCALAR_TIERS`]), or by a block of `SK_STREAM_THREADS` that re-reads it from memory. The
//! default picks the smallest team that holds the segment.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaStream, CudaView, CudaViewMut};

use super::{Axis, LerpNormalize, Normalize, Projection};
use crate::device::Gpu;
use crate::element::{DType, Element};
use crate::error::{Error, Result};
use crate::launch::{
    CudaLauncher, KernelParams, Launch, Launcher, MatArg, Rows, RowsMut, VecArg, Workspace,
    check_len, same_shape, vec_arg, vec_arg_mut,
};
use crate::params::*;

/// Which kernel tier runs a row operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tier {
    /// Chosen from the segment length: the smallest register-resident team that holds it,
    /// else the streaming tier.
    #[default]
    Auto,
    /// A register-resident team of this many threads per segment (one of the op's tiers); an
    /// error if the segment does not fit.
    Team(u32),
    /// The streaming tier: one block per segment, the segment re-read from memory per pass.
    Stream,
}

/// Threads per segment of the register tiers with 16-byte vector access (every op but lerp
/// backward).
pub const VECTOR_TIERS: [u32; 9] = [2, 4, 8, 16, 32, 64, 128, 256, 512];
/// The vector tiers of lerp backward: 512 threads would leave each fewer registers than its
/// three inputs need.
pub const LERP_BWD_VECTOR_TIERS: [u32; 8] = [2, 4, 8, 16, 32, 64, 128, 256];
/// The smallest vector team [`Tier::Auto`] picks.
const MIN_AUTO_VECTOR_TEAM: u32 = 4;
/// Threads per segment of the register tiers with scalar access (odd lengths, misalignment).
pub const SCALAR_TIERS: [u32; 4] = [8, 32, 128, 512];

/// Largest grid a row launch uses; workers loop over the remaining segments.
const MAX_GRID_BLOCKS: u64 = 1 << 20;
/// Upper bound on the f64 partial sums of a backward pass with column sums (32 MiB), unless the
/// smallest valid grid needs more.
const WORKSPACE_BUDGET: u64 = 1 << 22;
/// Resident threads per SM a persistent grid aims for.
const THREADS_PER_SM: u64 = 2048;

/// The row operations, each a family of kernels over dtypes and tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowOp {
    NormFwd,
    NormBwd,
    LerpFwd,
    LerpBwd,
}

impl RowOp {
    const ALL: [RowOp; 4] = [
        RowOp::NormFwd,
        RowOp::NormBwd,
        RowOp::LerpFwd,
        RowOp::LerpBwd,
    ];

    fn name(self) -> &'static str {
        match self {
            RowOp::NormFwd => "norm_fwd",
            RowOp::NormBwd => "norm_bwd",
            RowOp::LerpFwd => "lerp_fwd",
            RowOp::LerpBwd => "lerp_bwd",
        }
    }

    /// Elements per thread of the register tiers with 16-bit vector access (params.h).
    fn vector_tiers(self) -> &'static [u32] {
        match self {
            RowOp::LerpBwd => &LERP_BWD_VECTOR_TIERS,
            _ => &VECTOR_TIERS,
        }
    }

    fn elems(self) -> u32 {
        match self {
            RowOp::NormFwd => SK_NORM_FWD_ELEMS,
            RowOp::NormBwd => SK_NORM_BWD_ELEMS,
            RowOp::LerpFwd => SK_LERP_FWD_ELEMS,
            RowOp::LerpBwd => SK_LERP_BWD_ELEMS,
        }
    }

    /// Streaming blocks per SM the kernels are built for (params.h); each stages its rows in
    /// its share of the SM's shared memory.
    fn stream_blocks(self) -> u32 {
        match self {
            RowOp::NormFwd => SK_STREAM_BLOCKS_NORM_FWD,
            RowOp::NormBwd => SK_STREAM_BLOCKS_NORM_BWD,
            RowOp::LerpFwd => SK_STREAM_BLOCKS_LERP_FWD,
            RowOp::LerpBwd => SK_STREAM_BLOCKS_LERP_BWD,
        }
    }
}

/// One kernel of a row operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowKernel {
    op: RowOp,
    dtype: DType,
    vector: bool,
    /// Threads per segment; `None` for the streaming tier.
    tps: Option<u32>,
}

impl RowKernel {
    pub(crate) fn name(&self) -> String {
        let access = if self.vector { "v" } else { "s" };
        let tier = self
            .tps
            .map_or_else(|| "stream".to_string(), |t| t.to_string());
        format!("sk_{}_{}_{access}{tier}", self.op.name(), self.dtype.name())
    }

    fn vec(&self) -> u64 {
        if self.vector {
            self.dtype.vector_width() as u64
        } else {
            1
        }
    }

    /// Threads per block (the kernels check this under the emulator).
    pub(crate) fn block(&self) -> u32 {
        match self.tps {
            None => SK_STREAM_THREADS,
            Some(t) if t <= 32 => SK_SUBWARP_BLOCK_THREADS,
            Some(t) => t,
        }
    }

    /// Teams (workers) per block.
    fn teams_per_block(&self) -> u64 {
        u64::from(self.block() / self.tps.unwrap_or(SK_STREAM_THREADS))
    }

    /// Longest segment the kernel holds; unbounded for the streaming tier. Mirrors
    /// `tile_chunks` in kernels/hypersphere.cu.
    fn capacity(&self) -> u64 {
        let Some(tps) = self.tps else { return u64::MAX };
        let elems = u64::from(self.op.elems());
        let chunks = if self.vector {
            elems / self.vec()
        } else {
            elems / 4
        };
        u64::from(tps) * chunks * self.vec()
    }
}

/// Every row kernel the crate launches, for the module check at open time.
pub(crate) fn kernel_names() -> Vec<String> {
    let mut names = Vec::new();
    for dtype in DType::ALL {
        for op in RowOp::ALL {
            for (vector, tiers) in [(true, op.vector_tiers()), (false, &SCALAR_TIERS[..])] {
                for &t in tiers {
                    names.push(
                        RowKernel {
                            op,
                            dtype,
                            vector,
                            tps: Some(t),
                        }
                        .name(),
                    );
                }
                names.push(
                    RowKernel {
                        op,
                        dtype,
                        vector,
                        tps: None,
                    }
                    .name(),
                );
            }
        }
        names.push(format!("sk_colsum_{}", dtype.name()));
        for access in ["v", "s"] {
            names.push(format!("sk_lerp_dp_{}_{access}", dtype.name()));
            names.push(format!("sk_norm_ds_{}_{access}", dtype.name()));
        }
        names.push(format!("sk_project_{}", dtype.name()));
    }
    names
}

/// The kernel for a segment of `len` elements.
pub(crate) fn choose(
    op: RowOp,
    dtype: DType,
    len: usize,
    vector: bool,
    tier: Tier,
) -> Result<RowKernel> {
    let tiers: &[u32] = if vector {
        op.vector_tiers()
    } else {
        &SCALAR_TIERS
    };
    let len = len as u64;
    let stream = RowKernel {
        op,
        dtype,
        vector,
        tps: None,
    };
    match tier {
        Tier::Stream => Ok(stream),
        // Vector teams of 2 threads measured slower than teams of 4 at every length they hold
        // (f32 rows of 64: 80% against 95% of copy bandwidth on an H200): the smallest is 4.
        Tier::Auto => Ok(tiers
            .iter()
            .filter(|&&t| !vector || t >= MIN_AUTO_VECTOR_TEAM)
            .map(|&t| RowKernel {
                op,
                dtype,
                vector,
                tps: Some(t),
            })
            .find(|k| k.capacity() >= len)
            .unwrap_or(stream)),
        Tier::Team(t) => {
            if !tiers.contains(&t) {
                return Err(Error::param(
                    "tier",
                    format!(
                        "{t} threads is not a {} tier (have {tiers:?})",
                        if vector { "vector" } else { "scalar" }
                    ),
                ));
            }
            let k = RowKernel {
                op,
                dtype,
                vector,
                tps: Some(t),
            };
            if k.capacity() < len {
                return Err(Error::param(
                    "tier",
                    format!(
                        "a team of {t} holds {} elements, the segment has {len}",
                        k.capacity()
                    ),
                ));
            }
            Ok(k)
        }
    }
}

fn check_cols(cols: usize) -> Result<()> {
    if cols >= 1 << 31 {
        return Err(Error::TooLarge(format!(
            "rows of {cols} elements (at most 2^31 - 1)"
        )));
    }
    Ok(())
}

fn ptr(addr: u64) -> *const c_void {
    addr as *const c_void
}
fn ptr_mut(addr: u64) -> *mut c_void {
    addr as *mut c_void
}

fn vector_ok<T: Element>(len: usize, mats: &[&MatArg], vecs: &[Option<&VecArg>]) -> bool {
    let vec = T::DTYPE.vector_width();
    len.is_multiple_of(vec)
        && mats.iter().all(|m| m.vector_ok(vec, T::DTYPE.size()))
        && vecs.iter().flatten().all(|v| v.addr % 16 == 0)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Grid of a launch whose `segments` are shared among workers (teams), each worker taking
/// segments w, w + W, ... (W = grid x teams per block). The grid is a multiple of what makes
/// W a multiple of `groups_per_row` (so a backward worker keeps one group and its scale values),
/// at most WAVES waves of resident blocks (workers loop over the rest), and with column partial
/// sums (`partial_len` f64 per worker) one wave within the workspace budget.
fn worker_grid(
    k: &RowKernel,
    segments: u64,
    groups_per_row: u64,
    sm_count: u32,
    partial_len: Option<u64>,
) -> u32 {
    const WAVES: u64 = 8;
    let spb = k.teams_per_block();
    // The grid must be a multiple of q for workers = grid * spb to be a multiple of gpr.
    let q = groups_per_row / gcd(spb, groups_per_row);
    let grid = segments.div_ceil(spb).max(1).div_ceil(q) * q;
    let wave = u64::from(sm_count) * (THREADS_PER_SM / u64::from(k.block())).max(1);
    let cap = match partial_len {
        None => MAX_GRID_BLOCKS.min(WAVES * wave),
        Some(len) => MAX_GRID_BLOCKS
            .min(wave)
            .min(WORKSPACE_BUDGET / (spb * len.max(1))),
    };
    if grid > cap {
        ((cap / q).max(1) * q) as u32
    } else {
        grid as u32
    }
}

/// Shared-memory staging of a streaming launch: how many leading elements of each of its
/// `inputs` segments fit in the block's share of `budget` bytes (the dynamic shared memory one
/// block may have, about an SM's: each of the op's resident blocks gets 1/`stream_blocks` of it,
/// less the 1 KiB the driver reserves per block and the kernels' 1 KiB of static shared
/// memory), a multiple of the vector width; and the bytes that takes. Register tiers stage
/// nothing.
fn staging(k: &RowKernel, len: usize, inputs: usize, budget: u32) -> (u32, u32) {
    if k.tps.is_some() {
        return (0, 0);
    }
    let blocks = k.op.stream_blocks().max(1) as usize;
    let share = ((budget as usize + 2048) / blocks).saturating_sub(2048) / 128 * 128;
    let size = k.dtype.size();
    let vec = k.vec() as usize;
    let stage = (share / (inputs * size)).min(len) / vec * vec;
    (stage as u32, (stage * inputs * size) as u32)
}

/// A planned call: the main launch, and for backward passes with column sums the workspace it
/// needs (f64 elements) and the launches that reduce it.
#[derive(Debug)]
pub(crate) struct Plan<P> {
    pub main: Launch<P>,
    pub workspace: usize,
    pub finish: Option<ColumnSums>,
    /// Backward on the streaming tier with column sums (normalize's dscale, lerp's dp with p
    /// per channel): the column pass, which reads the row coefficients the main launch writes
    /// (`coef_len` f64 at the start of the workspace) and writes the partials that `finish`
    /// reduces (after them).
    pub columns: Option<ColumnPass<P>>,
}

/// The column pass of a plan (kernels/hypersphere.cu, norm_ds_columns and lerp_dp_columns).
#[derive(Debug)]
pub(crate) struct ColumnPass<P> {
    launch: Launch<P>,
    coef_len: usize,
}

/// The deterministic reduction of a backward pass's per-worker column partial sums (kernels/
/// params.h, sk_colsum_params): the workspace holds the partials (`partial_len` f64), then the
/// slices' sums when there is a second launch.
#[derive(Debug)]
pub(crate) struct ColumnSums {
    partial_len: usize,
    slices: Launch<sk_colsum_params>,
    total: Option<Launch<sk_colsum_params>>,
}

impl ColumnSums {
    /// Plans the sums of `workers` partial rows of `group` channels into `out` (`groups_per_row`
    /// groups of channels per row, worker w holding group w % groups_per_row), with enough
    /// slices of workers to occupy about two blocks per SM; returns the workspace f64 it needs
    /// with it. One slice (one launch) when the workers are few.
    fn plan(
        dtype: DType,
        workers: u64,
        group: u64,
        groups_per_row: u64,
        out: u64,
        sm_count: u32,
    ) -> (usize, ColumnSums) {
        let channels = group * groups_per_row;
        let col_tiles = channels.div_ceil(32);
        let per_group = workers / groups_per_row;
        // At least 128 workers per slice (4 per lane), at most ~2 blocks per SM in all.
        let slices = (2 * u64::from(sm_count))
            .div_ceil(col_tiles)
            .min(per_group.div_ceil(128))
            .max(1);
        let kernel = format!("sk_colsum_{}", dtype.name());
        let params = |step: u32| sk_colsum_params {
            partial: std::ptr::null(),
            sums: std::ptr::null_mut(),
            out: ptr_mut(out),
            workers: workers as u32,
            group: group as u32,
            groups_per_row: groups_per_row as u32,
            slices: slices as u32,
            col_tiles: col_tiles as u32,
            step,
        };
        let partial_len = (workers * group) as usize;
        let sums = ColumnSums {
            partial_len,
            slices: Launch {
                kernel: kernel.clone(),
                grid: (col_tiles * slices) as u32,
                block: 1024,
                shared_mem_bytes: 0,
                params: params(SK_COLSUM_SLICES),
            },
            total: (slices > 1).then(|| Launch {
                kernel,
                grid: channels.div_ceil(1024) as u32,
                block: 1024,
                shared_mem_bytes: 0,
                params: params(SK_COLSUM_TOTAL),
            }),
        };
        let workspace = partial_len
            + if slices > 1 {
                (slices * channels) as usize
            } else {
                0
            };
        (workspace, sums)
    }
}

/// Parameter structs with a workspace pointer for column partial sums, and one for the row
/// coefficients of a column pass.
pub(crate) trait HasPartial: Sized {
    fn set_partial(&mut self, addr: u64);
    fn set_row_coef(&mut self, addr: u64);
    /// The parameters of the column pass after a row pass with these: no staging, rows in
    /// chunks of `chunk_rows`.
    fn column_pass(&self, chunk_rows: u32) -> Self;
}
impl HasPartial for sk_normalize_params {
    fn set_partial(&mut self, addr: u64) {
        self.partial = addr as *mut f64;
    }
    fn set_row_coef(&mut self, addr: u64) {
        self.row_coef = addr as *mut f64;
    }
    fn column_pass(&self, chunk_rows: u32) -> Self {
        sk_normalize_params {
            stage: 0,
            chunk_rows,
            ..*self
        }
    }
}
impl HasPartial for sk_lerp_params {
    fn set_partial(&mut self, addr: u64) {
        self.partial = addr as *mut f64;
    }
    fn set_row_coef(&mut self, addr: u64) {
        self.row_coef = addr as *mut f64;
    }
    fn column_pass(&self, chunk_rows: u32) -> Self {
        sk_lerp_params {
            stage: 0,
            chunk_rows,
            ..*self
        }
    }
}

impl<P: KernelParams + HasPartial> Plan<P> {
    /// A plan without column sums.
    fn single(main: Launch<P>) -> Self {
        Plan {
            main,
            workspace: 0,
            finish: None,
            columns: None,
        }
    }

    /// A plan whose column sums the main launch leaves in per-worker partial rows, and
    /// `(workspace, sums)` reduces them (from [`ColumnSums::plan`]).
    fn with_partials(main: Launch<P>, (workspace, sums): (usize, ColumnSums)) -> Self {
        Plan {
            main,
            workspace,
            finish: Some(sums),
            columns: None,
        }
    }

    /// A plan whose main launch (a row pass) writes `coef_len` f64 of row coefficients, from
    /// which the column pass `kernel` sums `cols` columns over `rows` rows (threads of `vec`
    /// columns) in chunks of rows into the workspace, and the chunks' sums go to `out`.
    #[allow(clippy::too_many_arguments)]
    fn with_column_pass(
        main: Launch<P>,
        kernel: String,
        dtype: DType,
        rows: u64,
        cols: u64,
        vec: u64,
        coef_len: usize,
        out: u64,
        sm_count: u32,
    ) -> Result<Self> {
        let slab = u64::from(SK_COLUMN_PASS_THREADS) * vec;
        let slabs = cols.div_ceil(slab);
        // About two waves of 8 blocks per SM; chunks of at most 2^32 - 1 rows.
        let target = 16 * u64::from(sm_count);
        let chunks = target
            .div_ceil(slabs)
            .max(rows.div_ceil(u64::from(u32::MAX)))
            .clamp(1, rows.max(1));
        let chunk_rows = rows.div_ceil(chunks).max(1);
        let chunks = rows.div_ceil(chunk_rows).max(1);
        let (sums_len, sums) = ColumnSums::plan(dtype, chunks, cols, 1, out, sm_count);
        let launch = Launch {
            kernel,
            grid: u32::try_from(slabs * chunks).map_err(|_| {
                Error::TooLarge(format!("{slabs} x {chunks} blocks for a column pass"))
            })?,
            block: SK_COLUMN_PASS_THREADS,
            shared_mem_bytes: 0,
            params: main.params.column_pass(chunk_rows as u32),
        };
        Ok(Plan {
            main,
            workspace: coef_len + sums_len,
            finish: Some(sums),
            columns: Some(ColumnPass { launch, coef_len }),
        })
    }

    /// Launches the plan with its workspace at `workspace_addr` (ignored when none is needed).
    pub(crate) fn run(mut self, l: &impl Launcher, workspace_addr: u64) -> Result<()> {
        if let Some(f) = self.finish.as_mut() {
            // Workspace: [row coefficients (column pass only)][partials][slices' sums].
            let partial_addr = match self.columns.as_mut() {
                Some(c) => {
                    let partial_addr = workspace_addr + 8 * c.coef_len as u64;
                    self.main.params.set_row_coef(workspace_addr);
                    c.launch.params.set_row_coef(workspace_addr);
                    c.launch.params.set_partial(partial_addr);
                    partial_addr
                }
                None => {
                    self.main.params.set_partial(workspace_addr);
                    workspace_addr
                }
            };
            // The slices' sums follow the partials in the workspace (only with two launches).
            let sums = match f.total {
                Some(_) => (partial_addr + 8 * f.partial_len as u64) as *mut f64,
                None => std::ptr::null_mut(),
            };
            for launch in std::iter::once(&mut f.slices).chain(f.total.as_mut()) {
                launch.params.partial = partial_addr as *const f64;
                launch.params.sums = sums;
            }
        }
        l.launch(&self.main)?;
        if let Some(c) = &self.columns {
            l.launch(&c.launch)?;
        }
        if let Some(f) = &self.finish {
            l.launch(&f.slices)?;
            if let Some(total) = &f.total {
                l.launch(total)?;
            }
        }
        Ok(())
    }
}

// ---- normalize ----------------------------------------------------------------------------

/// Plans y = s ⊙ N(x).
pub(crate) fn plan_normalize_forward<T: Element>(
    op: &Normalize,
    l: &impl Launcher,
    x: &MatArg,
    scale: Option<&VecArg>,
    y: &MatArg,
) -> Result<Launch<sk_normalize_params>> {
    op.eps.validate()?;
    same_shape(&[("x", x), ("y", y)])?;
    check_cols(x.cols)?;
    let g = op.segment(x.cols)?;
    if let Some(s) = scale {
        check_len("scale", s, x.cols)?;
    }
    let vector = vector_ok::<T>(g, &[x, y], &[scale]);
    let k = choose(RowOp::NormFwd, T::DTYPE, g, vector, op.tier)?;
    let gpr = (x.cols / g) as u64;
    let grid = worker_grid(&k, x.rows as u64 * gpr, 1, l.sm_count(), None);
    let (stage, shared_mem_bytes) = staging(&k, g, 1, l.stream_smem_budget());
    let (eps_mode, eps) = op.eps.code();
    Ok(Launch {
        kernel: k.name(),
        grid,
        block: k.block(),
        shared_mem_bytes,
        params: sk_normalize_params {
            x: ptr(x.addr),
            dy: std::ptr::null(),
            scale: scale.map_or(std::ptr::null(), |s| ptr(s.addr)),
            out: ptr_mut(y.addr),
            partial: std::ptr::null_mut(),
            row_coef: std::ptr::null_mut(),
            rows: x.rows as u64,
            x_stride: x.stride as u64,
            dy_stride: 0,
            out_stride: y.stride as u64,
            cols: x.cols as u32,
            group: g as u32,
            eps_mode,
            eps,
            stage,
            chunk_rows: 0,
        },
    })
}

/// Plans dx (and dscale) of y = s ⊙ N(x).
pub(crate) fn plan_normalize_backward<T: Element>(
    op: &Normalize,
    l: &impl Launcher,
    x: &MatArg,
    scale: Option<&VecArg>,
    dy: &MatArg,
    dx: &MatArg,
    dscale: Option<&VecArg>,
) -> Result<Plan<sk_normalize_params>> {
    op.eps.validate()?;
    same_shape(&[("x", x), ("dy", dy), ("dx", dx)])?;
    check_cols(x.cols)?;
    let g = op.segment(x.cols)?;
    if let Some(s) = scale {
        check_len("scale", s, x.cols)?;
    }
    match (scale, dscale) {
        (None, Some(_)) => {
            return Err(Error::shape(
                "`dscale` was asked for but there is no `scale`",
            ));
        }
        (_, Some(d)) => check_len("dscale", d, x.cols)?,
        _ => {}
    }
    let vector = vector_ok::<T>(g, &[x, dy, dx], &[scale]);
    let k = choose(RowOp::NormBwd, T::DTYPE, g, vector, op.tier)?;
    let gpr = (x.cols / g) as u64;
    // The streaming tier sums dscale in a column pass (kernels/hypersphere.cu,
    // norm_ds_columns), not in per-worker partial rows.
    let column_pass = dscale.is_some() && k.tps.is_none();
    let partial_len = dscale.filter(|_| !column_pass).map(|_| g as u64);
    let grid = worker_grid(&k, x.rows as u64 * gpr, gpr, l.sm_count(), partial_len);
    let workers = u64::from(grid) * k.teams_per_block();
    let (stage, shared_mem_bytes) = staging(&k, g, 2, l.stream_smem_budget());
    let (eps_mode, eps) = op.eps.code();
    let main = Launch {
        kernel: k.name(),
        grid,
        block: k.block(),
        shared_mem_bytes,
        params: sk_normalize_params {
            x: ptr(x.addr),
            dy: ptr(dy.addr),
            scale: scale.map_or(std::ptr::null(), |s| ptr(s.addr)),
            out: ptr_mut(dx.addr),
            partial: std::ptr::null_mut(),
            row_coef: std::ptr::null_mut(),
            rows: x.rows as u64,
            x_stride: x.stride as u64,
            dy_stride: dy.stride as u64,
            out_stride: dx.stride as u64,
            cols: x.cols as u32,
            group: g as u32,
            eps_mode,
            eps,
            stage,
            chunk_rows: 0,
        },
    };
    let access = if vector { "v" } else { "s" };
    Ok(match dscale {
        None => Plan::single(main),
        Some(d) if column_pass => Plan::with_column_pass(
            main,
            format!("sk_norm_ds_{}_{access}", T::DTYPE.name()),
            T::DTYPE,
            x.rows as u64,
            x.cols as u64,
            k.vec(),
            x.rows * gpr as usize * SK_NORM_COEFS as usize,
            d.addr,
            l.sm_count(),
        )?,
        Some(d) => Plan::with_partials(
            main,
            ColumnSums::plan(T::DTYPE, workers, g as u64, gpr, d.addr, l.sm_count()),
        ),
    })
}

// ---- lerp_normalize -----------------------------------------------------------------------

fn check_p(p: &VecArg, cols: usize) -> Result<()> {
    if p.len != cols && p.len != 1 {
        return Err(Error::shape(format!(
            "`p` has {} elements: expected {cols} (per channel) or 1 (scalar)",
            p.len
        )));
    }
    Ok(())
}

fn lerp_flags(op: &LerpNormalize) -> u32 {
    (if op.renorm_h { SK_LERP_RENORM_H } else { 0 })
        | (if op.abs_alpha { SK_LERP_ABS_ALPHA } else { 0 })
}

/// Plans y = N(a + α ⊙ (N(u) − a)).
pub(crate) fn plan_lerp_forward<T: Element>(
    op: &LerpNormalize,
    l: &impl Launcher,
    h: &MatArg,
    u: &MatArg,
    p: &VecArg,
    y: &MatArg,
) -> Result<Launch<sk_lerp_params>> {
    op.validate()?;
    same_shape(&[("h", h), ("u", u), ("y", y)])?;
    check_cols(h.cols)?;
    check_p(p, h.cols)?;
    let p_vec = (p.len == h.cols).then_some(p);
    let vector = vector_ok::<T>(h.cols, &[h, u, y], &[p_vec]);
    let k = choose(RowOp::LerpFwd, T::DTYPE, h.cols, vector, op.tier)?;
    let grid = worker_grid(&k, h.rows as u64, 1, l.sm_count(), None);
    let (stage, shared_mem_bytes) = staging(&k, h.cols, 2, l.stream_smem_budget());
    let (eps_mode, eps) = op.eps.code();
    Ok(Launch {
        kernel: k.name(),
        grid,
        block: k.block(),
        shared_mem_bytes,
        params: sk_lerp_params {
            h: ptr(h.addr),
            u: ptr(u.addr),
            dy: std::ptr::null(),
            p: ptr(p.addr),
            out: ptr_mut(y.addr),
            out_u: std::ptr::null_mut(),
            partial: std::ptr::null_mut(),
            row_coef: std::ptr::null_mut(),
            rows: h.rows as u64,
            h_stride: h.stride as u64,
            u_stride: u.stride as u64,
            dy_stride: 0,
            out_stride: y.stride as u64,
            out_u_stride: 0,
            cols: h.cols as u32,
            p_len: p.len as u32,
            eps_mode,
            eps,
            c: op.c,
            flags: lerp_flags(op),
            stage,
            chunk_rows: 0,
        },
    })
}

/// The matrices of a lerp backward call.
pub(crate) struct LerpBackwardArgs<'a> {
    pub h: &'a MatArg,
    pub u: &'a MatArg,
    pub p: &'a VecArg,
    pub dy: &'a MatArg,
    pub dh: &'a MatArg,
    pub du: &'a MatArg,
    pub dp: Option<&'a VecArg>,
}

/// Plans dh, du (and dp) of the lerp.
pub(crate) fn plan_lerp_backward<T: Element>(
    op: &LerpNormalize,
    l: &impl Launcher,
    a: &LerpBackwardArgs<'_>,
) -> Result<Plan<sk_lerp_params>> {
    op.validate()?;
    same_shape(&[
        ("h", a.h),
        ("u", a.u),
        ("dy", a.dy),
        ("dh", a.dh),
        ("du", a.du),
    ])?;
    let cols = a.h.cols;
    check_cols(cols)?;
    check_p(a.p, cols)?;
    if let Some(dp) = a.dp {
        check_len("dp", dp, a.p.len)?;
    }
    let p_vec = (a.p.len == cols).then_some(a.p);
    let vector = vector_ok::<T>(cols, &[a.h, a.u, a.dy, a.dh, a.du], &[p_vec]);
    let k = choose(RowOp::LerpBwd, T::DTYPE, cols, vector, op.tier)?;
    // The streaming tier sums dp per channel in a column pass (kernels/hypersphere.cu,
    // lerp_dp_columns), not in per-worker partial rows; a scalar p keeps one f64 per worker.
    let column_pass = a.dp.is_some() && k.tps.is_none() && a.p.len == cols && cols > 1;
    let partial_len = a.dp.filter(|_| !column_pass).map(|_| a.p.len as u64);
    let grid = worker_grid(&k, a.h.rows as u64, 1, l.sm_count(), partial_len);
    let workers = u64::from(grid) * k.teams_per_block();
    let (stage, shared_mem_bytes) = staging(&k, cols, 3, l.stream_smem_budget());
    let (eps_mode, eps) = op.eps.code();
    let main = Launch {
        kernel: k.name(),
        grid,
        block: k.block(),
        shared_mem_bytes,
        params: sk_lerp_params {
            h: ptr(a.h.addr),
            u: ptr(a.u.addr),
            dy: ptr(a.dy.addr),
            p: ptr(a.p.addr),
            out: ptr_mut(a.dh.addr),
            out_u: ptr_mut(a.du.addr),
            partial: std::ptr::null_mut(),
            row_coef: std::ptr::null_mut(),
            rows: a.h.rows as u64,
            h_stride: a.h.stride as u64,
            u_stride: a.u.stride as u64,
            dy_stride: a.dy.stride as u64,
            out_stride: a.dh.stride as u64,
            out_u_stride: a.du.stride as u64,
            cols: cols as u32,
            p_len: a.p.len as u32,
            eps_mode,
            eps,
            c: op.c,
            flags: lerp_flags(op),
            stage,
            chunk_rows: 0,
        },
    };
    let access = if vector { "v" } else { "s" };
    Ok(match a.dp {
        None => Plan::single(main),
        Some(dp) if column_pass => Plan::with_column_pass(
            main,
            format!("sk_lerp_dp_{}_{access}", T::DTYPE.name()),
            T::DTYPE,
            a.h.rows as u64,
            cols as u64,
            k.vec(),
            a.h.rows * SK_LERP_COEFS as usize,
            dp.addr,
            l.sm_count(),
        )?,
        Some(dp) => Plan::with_partials(
            main,
            ColumnSums::plan(T::DTYPE, workers, a.p.len as u64, 1, dp.addr, l.sm_count()),
        ),
    })
}

// ---- projection ---------------------------------------------------------------------------

/// Plans the in-place projection of `mats` (one launch per SK_PROJECT_MAX_MATRICES matrices).
pub(crate) fn plan_project<T: Element>(
    proj: &Projection,
    mats: &[(MatArg, Axis)],
) -> Result<Vec<Launch<sk_project_params>>> {
    proj.eps.validate()?;
    if mats.is_empty() {
        return Err(Error::shape("no matrices to project"));
    }
    let vec = T::DTYPE.vector_width();
    let (eps_mode, eps) = proj.eps.code();
    let mut launches = Vec::new();
    for chunk in mats.chunks(SK_PROJECT_MAX_MATRICES as usize) {
        let mut params = sk_project_params {
            m: [sk_project_matrix::default(); SK_PROJECT_MAX_MATRICES as usize],
            count: chunk.len() as u32,
            eps_mode,
            eps,
            total_blocks: 0,
        };
        let mut blocks: u64 = 0;
        for (slot, (m, axis)) in params.m.iter_mut().zip(chunk) {
            let fits = |v: usize| u32::try_from(v).ok();
            let (Some(rows), Some(cols), Some(stride)) =
                (fits(m.rows), fits(m.cols), fits(m.stride))
            else {
                return Err(Error::TooLarge(format!(
                    "a {} x {} matrix with stride {} (projection takes dimensions < 2^32)",
                    m.rows, m.cols, m.stride
                )));
            };
            let vectorized = m.cols % vec == 0 && m.vector_ok(vec, T::DTYPE.size());
            let width = if vectorized { vec as u64 } else { 1 };
            let n_blocks = match axis {
                Axis::Rows => (m.rows as u64).div_ceil(u64::from(SK_PROJECT_ROWS_PER_BLOCK)),
                Axis::Cols => (m.cols as u64).div_ceil(u64::from(SK_PROJECT_COL_LANES) * width),
            };
            *slot = sk_project_matrix {
                w: ptr_mut(m.addr),
                rows,
                cols,
                stride,
                axis: match axis {
                    Axis::Rows => SK_AXIS_ROWS,
                    Axis::Cols => SK_AXIS_COLS,
                },
                vectorized: u32::from(vectorized),
                block_start: blocks as u32,
            };
            blocks += n_blocks;
            if blocks > crate::launch::MAX_GRID {
                return Err(Error::TooLarge(
                    "projection batch needs more than 2^31 blocks".into(),
                ));
            }
        }
        params.total_blocks = blocks as u32;
        launches.push(Launch {
            kernel: format!("sk_project_{}", T::DTYPE.name()),
            grid: blocks as u32,
            block: SK_PROJECT_THREADS,
            shared_mem_bytes: 0,
            params,
        });
    }
    Ok(launches)
}

// ---- public GPU entry points --------------------------------------------------------------

impl Normalize {
    /// y = s ⊙ N(x) on `stream`: `x` and `y` have the same shape (strides may differ), `scale`
    /// has one entry per channel. Enqueued without a host synchronization.
    ///
    /// Errors: shape or length mismatches, a group that does not divide the row, an invalid eps
    /// or tier, buffers from another context ([`Error`]); nothing is launched then.
    pub fn forward<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        x: &Rows<'_, T>,
        scale: Option<&CudaView<'_, T>>,
        y: &mut RowsMut<'_, T>,
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (xa, _x) = x.arg(gpu, stream, "x")?;
        let s = scale
            .map(|s| vec_arg(gpu, stream, s, "scale"))
            .transpose()?;
        let (ya, _y) = y.arg_mut(gpu, stream, "y")?;
        let launch = plan_normalize_forward::<T>(self, &l, &xa, s.as_ref().map(|(a, _)| a), &ya)?;
        l.launch(&launch)
    }

    /// dx = ∂L/∂x for y = s ⊙ N(x) given dy = ∂L/∂y, and, when `dscale` is given,
    /// dscale = Σ_rows dy ⊙ N(x) (overwritten, summed in a fixed order: bitwise reproducible
    /// for the same shapes on the same GPU). `workspace` holds the partial sums (and on the
    /// streaming tier each segment's r, for the column pass that sums dscale); it grows on
    /// `stream` when needed.
    ///
    /// Errors as [`Normalize::forward`], and `dscale` without `scale`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        x: &Rows<'_, T>,
        scale: Option<&CudaView<'_, T>>,
        dy: &Rows<'_, T>,
        dx: &mut RowsMut<'_, T>,
        dscale: Option<&mut CudaViewMut<'_, T>>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (xa, _x) = x.arg(gpu, stream, "x")?;
        let s = scale
            .map(|s| vec_arg(gpu, stream, s, "scale"))
            .transpose()?;
        let (dya, _dy) = dy.arg(gpu, stream, "dy")?;
        let (dxa, _dx) = dx.arg_mut(gpu, stream, "dx")?;
        let ds = dscale
            .map(|d| vec_arg_mut(gpu, stream, d, "dscale"))
            .transpose()?;
        let plan = plan_normalize_backward::<T>(
            self,
            &l,
            &xa,
            s.as_ref().map(|(a, _)| a),
            &dya,
            &dxa,
            ds.as_ref().map(|(a, _)| a),
        )?;
        run_with_workspace(plan, &l, gpu, stream, workspace)
    }
}

fn run_with_workspace<P: KernelParams + HasPartial>(
    plan: Plan<P>,
    l: &CudaLauncher<'_>,
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    workspace: &mut Workspace,
) -> Result<()> {
    if plan.workspace == 0 {
        return plan.run(l, 0);
    }
    let ws = workspace.get(gpu, stream, plan.workspace)?;
    let (addr, _ws) = cudarc::driver::DevicePtrMut::device_ptr_mut(ws, stream);
    plan.run(l, addr)
}

impl LerpNormalize {
    /// y = N(a + α ⊙ (N(u) − a)) on `stream`; `p` has `cols` entries or one.
    ///
    /// Errors: shape or length mismatches, an invalid eps, c or tier, buffers from another
    /// context; nothing is launched then.
    pub fn forward<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        h: &Rows<'_, T>,
        u: &Rows<'_, T>,
        p: &CudaView<'_, T>,
        y: &mut RowsMut<'_, T>,
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (ha, _h) = h.arg(gpu, stream, "h")?;
        let (ua, _u) = u.arg(gpu, stream, "u")?;
        let (pa, _p) = vec_arg(gpu, stream, p, "p")?;
        let (ya, _y) = y.arg_mut(gpu, stream, "y")?;
        let launch = plan_lerp_forward::<T>(self, &l, &ha, &ua, &pa, &ya)?;
        l.launch(&launch)
    }

    /// dh, du and (when asked) dp of the lerp given dy; dp is overwritten with the sum over rows
    /// (and over channels for a scalar p) in a fixed order. With rows too long for the register
    /// tiers and p per channel, dp is summed by a second pass over h, u and dy by columns (each
    /// row's normalization coefficients kept in `workspace`, 40 bytes per row).
    ///
    /// Errors as [`LerpNormalize::forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        h: &Rows<'_, T>,
        u: &Rows<'_, T>,
        p: &CudaView<'_, T>,
        dy: &Rows<'_, T>,
        dh: &mut RowsMut<'_, T>,
        du: &mut RowsMut<'_, T>,
        dp: Option<&mut CudaViewMut<'_, T>>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (ha, _h) = h.arg(gpu, stream, "h")?;
        let (ua, _u) = u.arg(gpu, stream, "u")?;
        let (pa, _p) = vec_arg(gpu, stream, p, "p")?;
        let (dya, _dy) = dy.arg(gpu, stream, "dy")?;
        let (dha, _dh) = dh.arg_mut(gpu, stream, "dh")?;
        let (dua, _du) = du.arg_mut(gpu, stream, "du")?;
        let dpa = dp.map(|d| vec_arg_mut(gpu, stream, d, "dp")).transpose()?;
        let args = LerpBackwardArgs {
            h: &ha,
            u: &ua,
            p: &pa,
            dy: &dya,
            dh: &dha,
            du: &dua,
            dp: dpa.as_ref().map(|(a, _)| a),
        };
        let plan = plan_lerp_backward::<T>(self, &l, &args)?;
        run_with_workspace(plan, &l, gpu, stream, workspace)
    }
}

impl Projection {
    /// Normalizes every row or every column of `w` in place.
    ///
    /// Errors: an invalid eps, dimensions of 2^32 or more, buffers from another context.
    pub fn project<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        w: &mut RowsMut<'_, T>,
        axis: Axis,
    ) -> Result<()> {
        self.project_many(gpu, stream, &mut [(w, axis)])
    }

    /// Projects many matrices of different shapes and axes in one launch (one launch per
    /// 112 matrices): nGPT's 6·n_layer + 2 matrices after every optimizer step.
    pub fn project_many<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        mats: &mut [(&mut RowsMut<'_, T>, Axis)],
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let mut args = Vec::with_capacity(mats.len());
        let mut guards = Vec::with_capacity(mats.len());
        for (w, axis) in mats.iter_mut() {
            let (a, g) = w.arg_mut(gpu, stream, "w")?;
            args.push((a, *axis));
            guards.push(g);
        }
        for launch in plan_project::<T>(self, &args)? {
            l.launch(&launch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use half::bf16;

    use super::*;
    use crate::launch::Recorder;

    fn mat(addr: u64, rows: usize, cols: usize) -> MatArg {
        MatArg {
            addr,
            rows,
            cols,
            stride: cols,
        }
    }

    #[test]
    fn streaming_dscale_takes_the_column_pass_and_its_workspace_layout() {
        const WS: u64 = 0x10_0000;
        let (rows, cols) = (2048, 131072);
        let (x, dy, dx) = (
            mat(0x1000, rows, cols),
            mat(0x2000, rows, cols),
            mat(0x3000, rows, cols),
        );
        let scale = VecArg {
            addr: 0x4000,
            len: cols,
        };
        let dscale = VecArg {
            addr: 0x5000,
            len: cols,
        };
        let op = Normalize::new(super::super::Eps::None);
        let plan = plan_normalize_backward::<bf16>(
            &op,
            &Recorder::default(),
            &x,
            Some(&scale),
            &dy,
            &dx,
            Some(&dscale),
        )
        .unwrap();
        let columns = plan.columns.as_ref().expect("a column pass");
        let coef_len = rows * SK_NORM_COEFS as usize;
        assert_eq!(columns.coef_len, coef_len);
        assert!(plan.workspace >= coef_len + 16 * cols, "{}", plan.workspace);
        // No per-worker partial rows: the grid is not held to one wave by the workspace budget.
        assert!(plan.main.grid > 132 * 8, "grid {}", plan.main.grid);
        let rec = Recorder::default();
        plan.run(&rec, WS).unwrap();
        let launches = rec.0.into_inner();
        let names: Vec<&str> = launches.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(
            &names[..3],
            [
                "sk_norm_bwd_bf16_vstream",
                "sk_norm_ds_bf16_v",
                "sk_colsum_bf16"
            ]
        );
        let partial = WS + 8 * coef_len as u64;
        let has = |i: usize, field: &str, addr: u64| {
            assert!(
                launches[i].2.contains(&format!("{field}: {addr:#x}")),
                "launch {i} lacks {field} = {addr:#x}: {}",
                launches[i].2
            );
        };
        has(0, "row_coef", WS);
        has(0, "partial", 0);
        has(1, "row_coef", WS);
        has(1, "partial", partial);
        has(2, "partial", partial);
        // The column pass covers every row: blocks = slabs x chunks, chunks x chunk_rows >= rows.
        let slabs = (cols as u32).div_ceil(SK_COLUMN_PASS_THREADS * 8);
        let chunks = launches[1].1 / slabs;
        let chunk_rows: u32 = launches[1]
            .2
            .split("chunk_rows: ")
            .nth(1)
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|t| t.parse().ok())
            .unwrap();
        assert_eq!(launches[1].1 % slabs, 0);
        assert!(chunks * chunk_rows >= rows as u32 && (chunks - 1) * chunk_rows < rows as u32);

        // A register tier keeps its per-worker partials: no column pass.
        let short = mat(0x1000, rows, 512);
        let scale = VecArg { len: 512, ..scale };
        let dscale = VecArg { len: 512, ..dscale };
        let plan = plan_normalize_backward::<bf16>(
            &op,
            &Recorder::default(),
            &short,
            Some(&scale),
            &short,
            &short,
            Some(&dscale),
        )
        .unwrap();
        assert!(plan.columns.is_none() && plan.finish.is_some());
    }
}
