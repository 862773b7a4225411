//! The simplex-random-feature kernels on the GPU (kernels/simplex.cu): the fused feature map,
//! launched on the caller's stream.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaViewMut, DevicePtrMut, SyncOnDrop};

use super::{AttentionShape, Favor, FeatureMap, KernelKind, Projection, Stabilizer};
use crate::device::Gpu;
use crate::element::{DType, Element};
use crate::error::{Error, Result};
use crate::launch::{
    CudaLauncher, Launch, Launcher, MAX_GRID, MatArg, Rows, RowsMut, VecArg, Workspace, check_len,
    slice_arg, vec_arg, vec_arg_mut,
};
use crate::params::{
    SK_FAVOR_MAX_VALUE_DIM, SK_FAVOR_SEGMENT, SK_FAVOR_TASK_COLUMNS, SK_FAVOR_TASK_FEATURES,
    SK_FAVOR_THREADS, SK_FAVOR_TILE_ROWS, SK_RF_ROWS, SK_RF_SHIFT_GIVEN, SK_RF_SHIFT_MAX_ONLY,
    SK_RF_SHIFT_NONE, SK_RF_SHIFT_ROW, SK_RF_TC_PASS, SK_RF_TC_ROWS, SK_RF_TC_THREADS,
    SK_RF_THREADS, sk_favor_backward_params, sk_favor_params, sk_rf_backward_params,
    sk_rf_estimate_params, sk_rf_features_params,
};

/// Dynamic shared memory the fused row shift may use: the exponents of a block's rows stay
/// there (SK_RF_ROWS x m floats) under the default 48 KiB per block, next to the kernel's
/// 10.5 KiB of static staging. Larger m recomputes the exponents instead.
const FUSED_SMEM_BYTES: u32 = 32 * 1024;

/// Every kernel of the family, for the module check at open time.
pub(crate) fn kernel_names() -> Vec<String> {
    let mut names = Vec::new();
    for t in DType::ALL {
        names.push(format!("sk_rf_features_{}", t.name()));
        names.push(format!("sk_rf_features_backward_{}", t.name()));
        names.push(format!("sk_rf_estimate_{}", t.name()));
        names.push(format!("sk_favor_state_{}", t.name()));
        names.push(format!("sk_favor_output_{}", t.name()));
        names.push(format!("sk_favor_grad_query_{}", t.name()));
        names.push(format!("sk_favor_grad_key_{}", t.name()));
        names.push(format!("sk_favor_grad_g_{}", t.name()));
        names.push(format!("sk_favor_grad_value_{}", t.name()));
        if t != DType::F32 {
            names.push(format!("sk_rf_features_{}_to_f32", t.name()));
            names.push(format!("sk_rf_features_backward_{}_from_f32", t.name()));
            names.push(format!("sk_rf_features_tc_{}", t.name()));
            names.push(format!("sk_rf_features_tc_{}_to_f32", t.name()));
        }
    }
    names.push("sk_rf_group_shift".to_string());
    names.push("sk_favor_prefix".to_string());
    names.push("sk_favor_grad_state".to_string());
    names
}

/// A projection matrix W (m x d, f32, row-major) in device memory.
#[derive(Debug)]
pub struct DeviceProjection {
    w: CudaSlice<f32>,
    features: usize,
    dim: usize,
}

impl DeviceProjection {
    /// Uploads `w` (rounded to f32) on `stream`.
    pub fn upload(stream: &Arc<CudaStream>, w: &Projection) -> Result<Self> {
        let data = stream
            .clone_htod(&w.to_f32())
            .map_err(|e| Error::driver("uploading a projection", e))?;
        Ok(DeviceProjection {
            w: data,
            features: w.features,
            dim: w.dim,
        })
    }

    /// m, the number of features.
    pub fn features(&self) -> usize {
        self.features
    }

    /// d, the input dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// W's launch argument on `stream`, and the guard that records the read.
    fn arg<'s>(
        &'s self,
        gpu: &Gpu,
        stream: &'s Arc<CudaStream>,
    ) -> Result<(ProjectionArg, SyncOnDrop<'s>)> {
        let (w, guard) = slice_arg(gpu, stream, &self.w, "w")?;
        let arg = ProjectionArg {
            addr: w.addr,
            features: self.features,
            dim: self.dim,
        };
        Ok((arg, guard))
    }
}

/// W's launch argument: its address and (m, d).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProjectionArg {
    pub addr: u64,
    pub features: usize,
    pub dim: usize,
}

fn to_f32(name: &'static str, v: f64) -> Result<f32> {
    let f = v as f32;
    if !f.is_finite() {
        return Err(Error::param(name, format!("{v} is not finite in f32")));
    }
    Ok(f)
}

/// The parameters every feature-map kernel shares (x, W, shift, the map's constants), after
/// checking x against W, the shift's length and the map; `out` is left null.
fn features_params(
    map: &FeatureMap,
    w: &ProjectionArg,
    x: &MatArg,
    shift: &VecArg,
) -> Result<sk_rf_features_params> {
    let (m, d) = (w.features, w.dim);
    if x.cols != d {
        return Err(Error::shape(format!(
            "`x` has {} columns but W is {m} x {d}",
            x.cols
        )));
    }
    check_len("shift", shift, x.rows)?;
    map.validate(x.rows)?;
    let (features, dim) = match (u32::try_from(m), u32::try_from(d)) {
        (Ok(f), Ok(k)) => (f, k),
        _ => return Err(Error::TooLarge(format!("W is {m} x {d}"))),
    };
    Ok(sk_rf_features_params {
        x: x.addr as *const c_void,
        w: w.addr as *const f32,
        out: std::ptr::null_mut(),
        shift: shift.addr as *mut f32,
        rows: x.rows as u64,
        x_stride: x.stride as u64,
        out_stride: 0,
        dim,
        features,
        mode: SK_RF_SHIFT_NONE,
        fused: 0,
        group_rows: 0,
        reserved: 0,
        input_scale: to_f32("input_scale", map.input_scale)?,
        norm_coefficient: map.kernel.norm_coefficient() as f32,
        eps: to_f32("eps", map.eps)?,
        feature_scale: (m as f64).powf(-0.5) as f32,
    })
}

/// Dynamic shared memory of the tensor-core feature map for W of m x d (see
/// kernels/params.h): the parts of W (W_hi, W_lo, and a third for f32 features) as
/// [mp][kp + 8] 16-bit words, the x tile, and the f32 row scratch (norms, per-warp maxima,
/// running maxima).
fn tc_smem_bytes(m: u64, d: u64, parts: u64) -> u64 {
    let pass = u64::from(SK_RF_TC_PASS);
    let rows = u64::from(SK_RF_TC_ROWS);
    let kp = d.div_ceil(16) * 16;
    let passes = m.div_ceil(pass);
    let mp = if passes == 1 {
        m.div_ceil(8) * 8
    } else {
        passes * pass
    };
    let stride = kp + 8;
    let halves = ((parts * mp + rows) * stride * 2).div_ceil(16) * 16;
    let warps = u64::from(SK_RF_TC_THREADS / 32);
    let slices = warps / (rows / 32);
    halves + 4 * rows * (2 + slices)
}

/// The launches of one feature map: one (no shift, or a row shift), or three (group shift:
/// the row maxima, the group maxima, the features with the given shift). 16-bit inputs go to
/// the tensor-core kernel when W fits in its shared memory (m (d + 8) 4 bytes and a little
/// more for 16-bit features, 6 bytes for f32 features: d = 64 allows m up to about 2900 and
/// 1900 on an H100); f32 inputs, and W too large, to the f32 SIMT kernel.
pub(crate) fn plan_features<T: Element>(
    map: &FeatureMap,
    l: &impl Launcher,
    out_f32: bool,
    w: &ProjectionArg,
    x: &MatArg,
    out: &MatArg,
    shift: &VecArg,
) -> Result<Vec<Launch<sk_rf_features_params>>> {
    let m = w.features;
    if (out.rows, out.cols) != (x.rows, m) {
        return Err(Error::shape(format!(
            "`out` is {} x {}, expected {} x {m}",
            out.rows, out.cols, x.rows
        )));
    }
    let base = sk_rf_features_params {
        out: out.addr as *mut c_void,
        out_stride: out.stride as u64,
        ..features_params(map, w, x, shift)?
    };
    let features = base.features;
    let tc_bytes = tc_smem_bytes(m as u64, w.dim as u64, if out_f32 { 3 } else { 2 });
    let tensor_cores = T::DTYPE != DType::F32 && tc_bytes <= u64::from(l.stream_smem_budget());
    let fused_bytes = u64::from(SK_RF_ROWS) * u64::from(features) * 4;
    let fused = fused_bytes <= u64::from(FUSED_SMEM_BYTES);
    let (kernel, block, row_tile, smem) = if tensor_cores {
        (
            format!(
                "sk_rf_features_tc_{}{}",
                T::DTYPE.name(),
                if out_f32 { "_to_f32" } else { "" }
            ),
            SK_RF_TC_THREADS,
            SK_RF_TC_ROWS,
            tc_bytes as u32,
        )
    } else {
        let name = match (T::DTYPE, out_f32) {
            (DType::F32, _) | (_, false) => format!("sk_rf_features_{}", T::DTYPE.name()),
            (t, true) => format!("sk_rf_features_{}_to_f32", t.name()),
        };
        (name, SK_RF_THREADS, SK_RF_ROWS, 0)
    };
    let tiles = (x.rows as u64).div_ceil(u64::from(row_tile));
    // The tensor-core kernel holds W for its whole grid-stride loop: one block per SM.
    let per_sm = if tensor_cores { 1 } else { 8 };
    let grid = tiles
        .min(u64::from(l.sm_count()) * per_sm)
        .clamp(1, MAX_GRID) as u32;
    let launch = |mode, fused: bool| Launch {
        kernel: kernel.clone(),
        grid,
        block,
        shared_mem_bytes: if tensor_cores {
            smem
        } else if fused {
            fused_bytes as u32
        } else {
            0
        },
        params: sk_rf_features_params {
            mode,
            fused: u32::from(fused),
            ..base
        },
    };
    Ok(match map.stabilizer {
        Stabilizer::None => vec![launch(SK_RF_SHIFT_NONE, false)],
        Stabilizer::Row => vec![launch(SK_RF_SHIFT_ROW, fused)],
        Stabilizer::Group { rows: g } => {
            let groups = (x.rows / g) as u64;
            let group_rows =
                u32::try_from(g).map_err(|_| Error::TooLarge(format!("groups of {g} rows")))?;
            let reduce = Launch {
                kernel: "sk_rf_group_shift".to_string(),
                grid: groups.min(u64::from(l.sm_count()) * 8).max(1) as u32,
                block: SK_RF_THREADS,
                shared_mem_bytes: 0,
                params: sk_rf_features_params { group_rows, ..base },
            };
            vec![
                launch(SK_RF_SHIFT_MAX_ONLY, false),
                reduce,
                launch(SK_RF_SHIFT_GIVEN, false),
            ]
        }
    })
}

impl FeatureMap {
    /// φ(x) for every row of `x` on `stream` (see [`super`] for the formula): `x` is rows x d
    /// in T, `out` rows x m in T, `shift` receives each row's shift (f32; 0 without a
    /// stabilizer). f32 data: an f32 dot product with W in f32 and one `expf` per feature
    /// (SIMT). f16/bf16 data: the projection on the tensor cores, x exact in its type and W as
    /// W_hi + W_lo in that type (W to 2^-16 relative for bf16, 2^-22 for f16), f32
    /// accumulation, then `expf` in f32; W larger than the kernel's shared memory falls back to
    /// the SIMT kernel. Enqueued without a host synchronization.
    ///
    /// Errors: `x` with other than d columns, `out` not rows x m, `shift` not of length rows,
    /// a bad map (eps, scale, group size that does not divide the rows), eps or the scale not
    /// finite in f32, buffers from another context. A non-finite input row gives NaN features
    /// and shift in that row only.
    pub fn features<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        w: &DeviceProjection,
        x: &Rows<'_, T>,
        out: &mut RowsMut<'_, T>,
        shift: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (wa, _w) = w.arg(gpu, stream)?;
        let (xa, _x) = x.arg(gpu, stream, "x")?;
        let (oa, _o) = out.arg_mut(gpu, stream, "out")?;
        let (sa, _s) = vec_arg_mut(gpu, stream, shift, "shift")?;
        for launch in plan_features::<T>(self, &l, false, &wa, &xa, &oa, &sa)? {
            l.launch(&launch)?;
        }
        Ok(())
    }
}

/// Plans log K̂ for a batch of pairs (a warp per pair).
pub(crate) fn plan_estimate<T: Element>(
    kernel: KernelKind,
    l: &impl Launcher,
    w: &ProjectionArg,
    x: &MatArg,
    y: &MatArg,
    out: &VecArg,
) -> Result<Launch<sk_rf_estimate_params>> {
    let (m, d) = (w.features, w.dim);
    for (name, a) in [("x", x), ("y", y)] {
        if a.cols != d {
            return Err(Error::shape(format!(
                "`{name}` has {} columns but W is {m} x {d}",
                a.cols
            )));
        }
    }
    if y.rows != x.rows {
        return Err(Error::shape(format!(
            "{} rows of `x` but {} of `y`: one pair per row",
            x.rows, y.rows
        )));
    }
    check_len("out", out, x.rows)?;
    if m == 0 {
        return Err(Error::shape("W has no features (m = 0)"));
    }
    let (features, dim) = match (u32::try_from(m), u32::try_from(d)) {
        (Ok(f), Ok(k)) => (f, k),
        _ => return Err(Error::TooLarge(format!("W is {m} x {d}"))),
    };
    let warps = u64::from(SK_RF_THREADS / 32);
    let grid = (x.rows as u64)
        .div_ceil(warps)
        .min(u64::from(l.sm_count()) * 16)
        .max(1) as u32;
    Ok(Launch {
        kernel: format!("sk_rf_estimate_{}", T::DTYPE.name()),
        grid,
        block: SK_RF_THREADS,
        shared_mem_bytes: 0,
        params: sk_rf_estimate_params {
            x: x.addr as *const c_void,
            y: y.addr as *const c_void,
            w: w.addr as *const f32,
            out: out.addr as *mut f32,
            pairs: x.rows as u64,
            x_stride: x.stride as u64,
            y_stride: y.stride as u64,
            dim,
            features,
            norm_coefficient: kernel.norm_coefficient() as f32,
            reserved: 0,
        },
    })
}

/// log K̂(x_p, y_p) for the pairs of rows of `x` and `y` (each pairs x d in T), into `out`
/// (f32, one per pair), on `stream`: K̂(x, y) = (1/m) Σ_i exp(w_i·(x + y) − c(|x|² + |y|²)),
/// c = 1/2 for the softmax kernel and 1 for the Gaussian, the unbiased estimate whose mean
/// over draws of W is the exact kernel ([`KernelKind::exact`]). The same estimate as
/// `cpu::estimate_pairs` without forming φ: the dot products in f32, |x|² + |y|² in f64, the sum
/// from the largest exponent (an online log-sum-exp), so log K̂ is finite wherever it is in
/// f32 (−inf where every term is below f32's range). A warp per pair, a lane per feature: for
/// statistical validation over many pairs or draws of W, not tuned for speed. Enqueued without
/// a host synchronization.
///
/// Errors: `x` or `y` with other than d columns, different numbers of rows, `out` not of
/// length pairs, m = 0, buffers from another context (and zero pairs, as row views are never
/// empty). A pair with a non-finite entry gets NaN, the others are unaffected.
pub fn log_estimate_pairs<T: Element>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    kernel: KernelKind,
    w: &DeviceProjection,
    x: &Rows<'_, T>,
    y: &Rows<'_, T>,
    out: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    let l = CudaLauncher::new(gpu, stream)?;
    let (wa, _w) = w.arg(gpu, stream)?;
    let (xa, _x) = x.arg(gpu, stream, "x")?;
    let (ya, _y) = y.arg(gpu, stream, "y")?;
    let (oa, _o) = vec_arg_mut(gpu, stream, out, "out")?;
    l.launch(&plan_estimate::<T>(kernel, &l, &wa, &xa, &ya, &oa)?)
}

/// Shared memory of the feature-map gradient: one f32 slice of m per warp, within the default
/// 48 KiB per block (so m ≤ 1536).
const BACKWARD_SMEM_LIMIT: u64 = 48 * 1024;

/// Plans the feature-map gradient: a warp per row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_features_backward<T: Element>(
    map: &FeatureMap,
    l: &impl Launcher,
    dphi_f32: bool,
    w: &ProjectionArg,
    x: &MatArg,
    shift: &VecArg,
    dphi: &MatArg,
    dx: &MatArg,
) -> Result<Launch<sk_rf_backward_params>> {
    let (m, d) = (w.features, w.dim);
    if (dx.rows, dx.cols) != (x.rows, d) {
        return Err(Error::shape(format!(
            "`dx` is {} x {}, expected {} x {d}",
            dx.rows, dx.cols, x.rows
        )));
    }
    if (dphi.rows, dphi.cols) != (x.rows, m) {
        return Err(Error::shape(format!(
            "`dphi` is {} x {}, expected {} x {m}",
            dphi.rows, dphi.cols, x.rows
        )));
    }
    let f = sk_rf_features_params {
        mode: SK_RF_SHIFT_GIVEN,
        ..features_params(map, w, x, shift)?
    };
    let smem = u64::from(SK_RF_THREADS / 32) * m as u64 * 4;
    if smem > BACKWARD_SMEM_LIMIT {
        return Err(Error::TooLarge(format!(
            "the feature-map gradient supports m <= 1536, not {m}"
        )));
    }
    let warps = u64::from(SK_RF_THREADS / 32);
    let grid = (x.rows as u64)
        .div_ceil(warps)
        .min(u64::from(l.sm_count()) * 16)
        .clamp(1, MAX_GRID) as u32;
    Ok(Launch {
        kernel: match (T::DTYPE, dphi_f32) {
            (DType::F32, _) | (_, false) => format!("sk_rf_features_backward_{}", T::DTYPE.name()),
            (t, true) => format!("sk_rf_features_backward_{}_from_f32", t.name()),
        },
        grid,
        block: SK_RF_THREADS,
        shared_mem_bytes: smem as u32,
        params: sk_rf_backward_params {
            f,
            dphi: dphi.addr as *const c_void,
            dx: dx.addr as *mut c_void,
            dphi_stride: dphi.stride as u64,
            dx_stride: dx.stride as u64,
        },
    })
}

impl FeatureMap {
    /// The gradient of Σ dφ·φ with respect to x, with the shift the forward pass wrote held
    /// constant (see [`super`]): dx_r = s Σ_i g_ri w_i − 2 c s² x_r Σ_i g_ri,
    /// g_ri = dφ_ri m^{−1/2} exp(a_ri − shift_r). The exponents are recomputed from x in f32
    /// (not read back from a rounded φ). A warp per row.
    ///
    /// Errors: shapes that disagree with W or with each other, `shift` not of length rows,
    /// m above 1536, a bad map, buffers from another context.
    #[allow(clippy::too_many_arguments)]
    pub fn features_backward<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        w: &DeviceProjection,
        x: &Rows<'_, T>,
        shift: &cudarc::driver::CudaView<'_, f32>,
        dphi: &Rows<'_, T>,
        dx: &mut RowsMut<'_, T>,
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (wa, _w) = w.arg(gpu, stream)?;
        let (xa, _x) = x.arg(gpu, stream, "x")?;
        let (sa, _s) = vec_arg(gpu, stream, shift, "shift")?;
        let (ga, _g) = dphi.arg(gpu, stream, "dphi")?;
        let (da, _d) = dx.arg_mut(gpu, stream, "dx")?;
        l.launch(&plan_features_backward::<T>(
            self, &l, false, &wa, &xa, &sa, &ga, &da,
        )?)
    }
}

// ---- FAVOR+ ----------------------------------------------------------------------------------

/// The launches of one FAVOR+ forward pass.
pub(crate) struct FavorPlan {
    features: Vec<Launch<sk_rf_features_params>>,
    favor: Vec<Launch<sk_favor_params>>,
}

impl FavorPlan {
    pub(crate) fn run(&self, l: &impl Launcher) -> Result<()> {
        self.features.iter().try_for_each(|f| l.launch(f))?;
        self.favor.iter().try_for_each(|f| l.launch(f))
    }
}

/// Regions of the FAVOR+ workspace, in f32 elements, each starting on 16 bytes. The gradient
/// regions (g, dstates, dphiq, dphik) are empty for the forward pass.
struct FavorLayout {
    phiq: usize,
    phik: usize,
    qshift: usize,
    kshift: usize,
    states: usize,
    g: usize,
    dstates: usize,
    dphiq: usize,
    dphik: usize,
    total: usize,
}

fn favor_layout(shape: &AttentionShape, m: usize, grad: bool) -> Result<FavorLayout> {
    let too_large = || Error::TooLarge(format!("FAVOR+ workspace for {shape:?} and m = {m}"));
    let rows = shape.heads.checked_mul(shape.len).ok_or_else(too_large)?;
    let segments = shape.len.div_ceil(SK_FAVOR_SEGMENT as usize);
    let width = shape.value_dim + 1;
    let feats = rows.checked_mul(m).ok_or_else(too_large)?;
    let states = shape
        .heads
        .checked_mul(segments)
        .and_then(|v| v.checked_mul(m))
        .and_then(|v| v.checked_mul(width))
        .ok_or_else(too_large)?;
    let g = rows.checked_mul(width).ok_or_else(too_large)?;
    // Region sizes in order, each rounded up to 4 floats; the gradient's only when asked.
    let grad_sizes = if grad {
        [g, states, feats, feats]
    } else {
        [0; 4]
    };
    let sizes = [feats, feats, rows, rows, states];
    let mut offsets = [0usize; 10];
    let mut at = 0usize;
    for (o, size) in offsets.iter_mut().zip(sizes.iter().chain(&grad_sizes)) {
        *o = at;
        at = at.checked_add(size.div_ceil(4) * 4).ok_or_else(too_large)?;
    }
    let [
        phiq,
        phik,
        qshift,
        kshift,
        states,
        g,
        dstates,
        dphiq,
        dphik,
        _,
    ] = offsets;
    Ok(FavorLayout {
        phiq,
        phik,
        qshift,
        kshift,
        states,
        g,
        dstates,
        dphiq,
        dphik,
        total: at,
    })
}

/// f64 elements of workspace a FAVOR+ forward pass (or, with `grad`, its gradient) needs.
pub(crate) fn favor_workspace_len(shape: &AttentionShape, m: usize, grad: bool) -> Result<usize> {
    Ok(favor_layout(shape, m, grad)?.total.div_ceil(2))
}

/// Checks that `a` is rows x cols for `shape`.
fn check_attention_rows(
    name: &str,
    a: &MatArg,
    rows: usize,
    cols: usize,
    shape: &AttentionShape,
) -> Result<()> {
    if (a.rows, a.cols) != (rows, cols) {
        return Err(Error::shape(format!(
            "`{name}` is {} x {}, expected {rows} x {cols} for {shape:?}",
            a.rows, a.cols
        )));
    }
    Ok(())
}

/// The stages the forward pass and the gradient share: features into the workspace, segment
/// states and their prefix sums (or total).
struct FavorStages {
    features: Vec<Launch<sk_rf_features_params>>,
    params: sk_favor_params,
    state: Launch<sk_favor_params>,
    prefix: Launch<sk_favor_params>,
    lay: FavorLayout,
    rows: usize,
}

/// Grids of the FAVOR+ kernels: the blocks their tasks need (a warp per state task or output
/// tile, a thread per (head, state entry), a warp per gradient row), capped at `per_sm` blocks
/// per SM (grid-stride loops).
fn favor_grid(l: &impl Launcher, blocks: u64, per_sm: u64) -> u32 {
    blocks
        .min(u64::from(l.sm_count()) * per_sm)
        .clamp(1, MAX_GRID) as u32
}

#[allow(clippy::too_many_arguments)]
fn plan_favor_stages<T: Element>(
    opts: &Favor,
    l: &impl Launcher,
    shape: &AttentionShape,
    w: &ProjectionArg,
    q: &MatArg,
    k: &MatArg,
    v: &MatArg,
    work_addr: u64,
    grad: bool,
) -> Result<FavorStages> {
    let rows = shape.heads.checked_mul(shape.len).unwrap_or(0);
    if rows == 0 {
        return Err(Error::shape(
            "FAVOR+ needs at least one head and one position",
        ));
    }
    check_attention_rows("q", q, rows, shape.dim, shape)?;
    check_attention_rows("k", k, rows, shape.dim, shape)?;
    check_attention_rows("v", v, rows, shape.value_dim, shape)?;
    if shape.value_dim > SK_FAVOR_MAX_VALUE_DIM as usize {
        return Err(Error::TooLarge(format!(
            "value dimension {} (at most {SK_FAVOR_MAX_VALUE_DIM})",
            shape.value_dim
        )));
    }
    if !(opts.guard.is_finite() && opts.guard >= 0.0) {
        return Err(Error::param(
            "guard",
            format!("must be finite and >= 0, not {}", opts.guard),
        ));
    }
    let m = w.features;
    let lay = favor_layout(shape, m, grad)?;
    let at = |offset: usize| work_addr + 4 * offset as u64;
    let feats = |addr| MatArg {
        addr,
        rows,
        cols: m,
        stride: m,
    };
    let vec = |addr| VecArg { addr, len: rows };
    let mut features = plan_features::<T>(
        &opts.query_map(),
        l,
        true,
        w,
        q,
        &feats(at(lay.phiq)),
        &vec(at(lay.qshift)),
    )?;
    features.extend(plan_features::<T>(
        &opts.key_map(shape.len),
        l,
        true,
        w,
        k,
        &feats(at(lay.phik)),
        &vec(at(lay.kshift)),
    )?);
    let segments = shape.len.div_ceil(SK_FAVOR_SEGMENT as usize);
    let params = sk_favor_params {
        phiq: at(lay.phiq) as *const f32,
        phik: at(lay.phik) as *const f32,
        v: v.addr as *const c_void,
        out: std::ptr::null_mut(),
        states: at(lay.states) as *mut f32,
        heads: shape.heads as u64,
        len: shape.len as u64,
        v_stride: v.stride as u64,
        out_stride: 0,
        features: m as u32,
        value_dim: shape.value_dim as u32,
        segments: u32::try_from(segments)
            .map_err(|_| Error::TooLarge(format!("{} positions", shape.len)))?,
        causal: u32::from(opts.causal),
        guard: opts.guard as f32,
        reverse: 0,
    };
    let entries = (m * (shape.value_dim + 1)) as u64;
    let launch = |kernel: String, grid| Launch {
        kernel,
        grid,
        block: SK_FAVOR_THREADS,
        shared_mem_bytes: 0,
        params,
    };
    Ok(FavorStages {
        features,
        params,
        state: launch(
            format!("sk_favor_state_{}", T::DTYPE.name()),
            favor_grid(l, favor_state_tasks(shape, m, segments), 8),
        ),
        prefix: launch(
            "sk_favor_prefix".to_string(),
            favor_grid(
                l,
                (shape.heads as u64 * entries).div_ceil(u64::from(SK_FAVOR_THREADS)),
                8,
            ),
        ),
        lay,
        rows,
    })
}

/// Blocks for the state kernels (forward and gradient): a warp per (head, segment, 32
/// features, 72 columns).
fn favor_state_tasks(shape: &AttentionShape, m: usize, segments: usize) -> u64 {
    let tasks = shape.heads as u64
        * segments as u64
        * m.div_ceil(SK_FAVOR_TASK_FEATURES as usize) as u64
        * (shape.value_dim + 1).div_ceil(SK_FAVOR_TASK_COLUMNS as usize) as u64;
    tasks.div_ceil(u64::from(SK_FAVOR_THREADS / 32))
}

/// A warp per tile of `SK_FAVOR_TILE_ROWS` positions of one head: the grid of the output kernel.
fn favor_tile_grid(l: &impl Launcher, shape: &AttentionShape) -> u32 {
    let tiles = shape.heads as u64 * shape.len.div_ceil(SK_FAVOR_TILE_ROWS as usize) as u64;
    favor_grid(l, tiles.div_ceil(u64::from(SK_FAVOR_THREADS / 32)), 16)
}

/// Plans FAVOR+ forward: query and key features into the workspace (f32), segment states,
/// their prefix sums (or total), and the outputs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_favor<T: Element>(
    opts: &Favor,
    l: &impl Launcher,
    shape: &AttentionShape,
    w: &ProjectionArg,
    q: &MatArg,
    k: &MatArg,
    v: &MatArg,
    out: &MatArg,
    work_addr: u64,
) -> Result<FavorPlan> {
    let st = plan_favor_stages::<T>(opts, l, shape, w, q, k, v, work_addr, false)?;
    check_attention_rows("out", out, st.rows, shape.value_dim, shape)?;
    let output = Launch {
        kernel: format!("sk_favor_output_{}", T::DTYPE.name()),
        grid: favor_tile_grid(l, shape),
        block: SK_FAVOR_THREADS,
        shared_mem_bytes: 0,
        params: sk_favor_params {
            out: out.addr as *mut c_void,
            out_stride: out.stride as u64,
            ..st.params
        },
    };
    Ok(FavorPlan {
        features: st.features,
        favor: vec![st.state, st.prefix, output],
    })
}

/// The launches of one FAVOR+ gradient: the forward stages, G and the query gradient, the
/// gradient states, the key and value gradients, and the two feature-map gradients.
pub(crate) struct FavorBackwardPlan {
    forward: FavorPlan,
    query: [Launch<sk_favor_backward_params>; 2],
    grad_state: Launch<sk_favor_backward_params>,
    grad_prefix: Launch<sk_favor_params>,
    key: [Launch<sk_favor_backward_params>; 2],
    inputs: [Launch<sk_rf_backward_params>; 2],
}

impl FavorBackwardPlan {
    pub(crate) fn run(&self, l: &impl Launcher) -> Result<()> {
        self.forward.run(l)?;
        self.run_after_forward(l)
    }

    /// The gradient stages alone, for a workspace that already holds the forward stages of
    /// the same call (the forward's regions are at the same offsets in both layouts).
    pub(crate) fn run_after_forward(&self, l: &impl Launcher) -> Result<()> {
        self.query.iter().try_for_each(|f| l.launch(f))?;
        l.launch(&self.grad_state)?;
        l.launch(&self.grad_prefix)?;
        self.key.iter().try_for_each(|f| l.launch(f))?;
        self.inputs.iter().try_for_each(|f| l.launch(f))
    }
}

/// The gradients' outputs and the incoming gradient of one FAVOR+ backward pass.
pub(crate) struct FavorGradArgs {
    pub dout: MatArg,
    pub dq: MatArg,
    pub dk: MatArg,
    pub dv: MatArg,
}

/// Plans the FAVOR+ gradient (see [`Favor::backward`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_favor_backward<T: Element>(
    opts: &Favor,
    l: &impl Launcher,
    shape: &AttentionShape,
    w: &ProjectionArg,
    q: &MatArg,
    k: &MatArg,
    v: &MatArg,
    grads: &FavorGradArgs,
    work_addr: u64,
) -> Result<FavorBackwardPlan> {
    let st = plan_favor_stages::<T>(opts, l, shape, w, q, k, v, work_addr, true)?;
    let rows = st.rows;
    check_attention_rows("dout", &grads.dout, rows, shape.value_dim, shape)?;
    check_attention_rows("dq", &grads.dq, rows, shape.dim, shape)?;
    check_attention_rows("dk", &grads.dk, rows, shape.dim, shape)?;
    check_attention_rows("dv", &grads.dv, rows, shape.value_dim, shape)?;
    let (lay, m) = (&st.lay, w.features);
    let at = |offset: usize| work_addr + 4 * offset as u64;
    let bp = sk_favor_backward_params {
        f: st.params,
        dout: grads.dout.addr as *const c_void,
        dv: grads.dv.addr as *mut c_void,
        g: at(lay.g) as *mut f32,
        dstates: at(lay.dstates) as *mut f32,
        dphiq: at(lay.dphiq) as *mut f32,
        dphik: at(lay.dphik) as *mut f32,
        dout_stride: grads.dout.stride as u64,
        dv_stride: grads.dv.stride as u64,
    };
    let t = T::DTYPE.name();
    let tile_launch = |kernel: String| Launch {
        kernel,
        grid: favor_tile_grid(l, shape),
        block: SK_FAVOR_THREADS,
        shared_mem_bytes: 0,
        params: bp,
    };
    let grad_state = Launch {
        kernel: "sk_favor_grad_state".to_string(),
        grid: st.state.grid,
        block: SK_FAVOR_THREADS,
        shared_mem_bytes: 0,
        params: bp,
    };
    let grad_prefix = Launch {
        params: sk_favor_params {
            states: bp.dstates,
            reverse: 1,
            ..st.params
        },
        ..st.prefix.clone()
    };
    let feats = |offset: usize| MatArg {
        addr: at(offset),
        rows,
        cols: m,
        stride: m,
    };
    let vec = |offset: usize| VecArg {
        addr: at(offset),
        len: rows,
    };
    let inputs = [
        plan_features_backward::<T>(
            &opts.query_map(),
            l,
            true,
            w,
            q,
            &vec(lay.qshift),
            &feats(lay.dphiq),
            &grads.dq,
        )?,
        plan_features_backward::<T>(
            &opts.key_map(shape.len),
            l,
            true,
            w,
            k,
            &vec(lay.kshift),
            &feats(lay.dphik),
            &grads.dk,
        )?,
    ];
    Ok(FavorBackwardPlan {
        forward: FavorPlan {
            features: st.features,
            favor: vec![st.state, st.prefix],
        },
        query: [
            tile_launch(format!("sk_favor_grad_g_{t}")),
            tile_launch(format!("sk_favor_grad_query_{t}")),
        ],
        grad_state,
        grad_prefix,
        key: [
            tile_launch(format!("sk_favor_grad_key_{t}")),
            tile_launch(format!("sk_favor_grad_value_{t}")),
        ],
        inputs,
    })
}

/// What [`Favor::forward_saved`] left in a workspace for [`Favor::backward_saved`]: which call
/// (options, shape, storage type, the addresses and strides of W, q, k and v) and which use of
/// which [`Workspace`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FavorSaved {
    call: SavedCall,
    workspace: (u64, u64),
}

/// The identity of a FAVOR+ call, as far as its saved stages depend on it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SavedCall {
    opts: Favor,
    shape: AttentionShape,
    dtype: DType,
    /// W (address, features) and q, k, v (address, stride).
    inputs: [(u64, usize); 4],
}

impl SavedCall {
    fn new<T: Element>(
        opts: &Favor,
        shape: &AttentionShape,
        w: &ProjectionArg,
        q: &MatArg,
        k: &MatArg,
        v: &MatArg,
    ) -> Self {
        SavedCall {
            opts: *opts,
            shape: *shape,
            dtype: T::DTYPE,
            inputs: [
                (w.addr, w.features),
                (q.addr, q.stride),
                (k.addr, k.stride),
                (v.addr, v.stride),
            ],
        }
    }
}

impl FavorSaved {
    /// Ok when `call` is the call that saved these stages and `workspace` (its
    /// [`Workspace::use_mark`]) shows no other call since.
    fn check(&self, call: &SavedCall, workspace: (u64, u64)) -> Result<()> {
        if *call != self.call {
            return Err(Error::param(
                "saved",
                format!(
                    "the saved forward was of another call ({:?}), not this one ({call:?})",
                    self.call
                ),
            ));
        }
        if workspace.0 != self.workspace.0 {
            return Err(Error::param(
                "saved",
                "the saved forward's stages are in another workspace",
            ));
        }
        if workspace.1 != self.workspace.1 {
            return Err(Error::param(
                "saved",
                format!(
                    "{} other calls used the workspace since the saved forward",
                    workspace.1.wrapping_sub(self.workspace.1)
                ),
            ));
        }
        Ok(())
    }
}

impl Favor {
    /// FAVOR+ attention forward on `stream` (see [`super`] for the formula): `q`, `k` are
    /// [heads · len, dim] rows, `v` and `out` [heads · len, value_dim], all in T, sequences
    /// stored one after another; W is shared by every head. Features are computed in f32 into
    /// `workspace` (2 · heads · len · m floats, plus one (m x (value_dim + 1)) state per 64
    /// positions per head), then the per-segment states, their prefix sums (causal) or total,
    /// and the outputs, all in f32 with deterministic summation orders. The state sums and the
    /// outputs (φ(q) S, and causally the masked φ(q) φ(k)ᵀ [v, 1] within a 64-row segment) run
    /// on the bf16 tensor cores with every f32 operand split into three bf16 parts (exact) and
    /// every partial product above 2^-24 relative kept: f32 accuracy, a warp per 16-row tile.
    ///
    /// Errors: shapes that disagree with `shape` or W, zero heads or length, value_dim above
    /// 255, a negative or non-finite guard or eps, buffers from another context.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        shape: &AttentionShape,
        w: &DeviceProjection,
        q: &Rows<'_, T>,
        k: &Rows<'_, T>,
        v: &Rows<'_, T>,
        out: &mut RowsMut<'_, T>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        self.forward_into(gpu, stream, shape, w, q, k, v, out, workspace, false)
            .map(|_| ())
    }

    /// The gradient of Σ dout·out for [`Favor::forward`] with respect to q, k and v, written
    /// to `dq`, `dk` (rows x dim) and `dv` (rows x value_dim), all in T; the feature shifts
    /// are held constant (see [`super`]). The forward stages (features, states, prefix sums)
    /// are recomputed into `workspace`, which also holds G = [dout, −dout·out]/den (rows x
    /// (value_dim + 1)), the gradient states and dφ(q), dφ(k) in f32. Then, all in f32:
    /// G, dφ(q_i) = S_i G_i, the gradient states D = Σ φ(q_i) G_iᵀ per segment and their
    /// suffix sums (causal) or total, dφ(k_j) = D_j [v_j, 1] and dv_j = D_j[:, :dv]ᵀ φ(k_j),
    /// and the two feature-map gradients ([`FeatureMap::features_backward`] from f32).
    /// Deterministic summation orders. Every product but the feature-map gradients runs on
    /// the tensor cores as the forward's do (f32 operands in three bf16 parts, f32 accuracy),
    /// a warp per 16-row tile, with the segment's own keys (causal) as a masked tile product.
    ///
    /// Errors: as [`Favor::forward`], `dout`, `dq`, `dk` or `dv` of the wrong shape, and m
    /// above 1536 (the feature-map gradient's limit).
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        shape: &AttentionShape,
        w: &DeviceProjection,
        q: &Rows<'_, T>,
        k: &Rows<'_, T>,
        v: &Rows<'_, T>,
        dout: &Rows<'_, T>,
        dq: &mut RowsMut<'_, T>,
        dk: &mut RowsMut<'_, T>,
        dv: &mut RowsMut<'_, T>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        self.backward_from(
            gpu, stream, None, shape, w, q, k, v, dout, dq, dk, dv, workspace,
        )
    }

    /// [`Favor::forward`] for a training step: the same outputs, with `workspace` sized for
    /// the backward pass and its forward stages (features, shifts, states) kept for
    /// [`Favor::backward_saved`], which then skips recomputing them. The returned
    /// [`FavorSaved`] names this call and this use of the workspace.
    ///
    /// Errors: as [`Favor::forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward_saved<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        shape: &AttentionShape,
        w: &DeviceProjection,
        q: &Rows<'_, T>,
        k: &Rows<'_, T>,
        v: &Rows<'_, T>,
        out: &mut RowsMut<'_, T>,
        workspace: &mut Workspace,
    ) -> Result<FavorSaved> {
        self.forward_into(gpu, stream, shape, w, q, k, v, out, workspace, true)
    }

    /// [`Favor::backward`] after [`Favor::forward_saved`] of the same call: the same gradients,
    /// from the forward stages `saved` left in `workspace` instead of recomputing them (one
    /// feature map of q and of k, the segment states and their prefix sums per step). The
    /// contents of W, q, k and v must not have changed since (like a saved tensor's).
    ///
    /// Errors: as [`Favor::backward`], and an [`Error::InvalidParameter`] named "saved", with
    /// nothing launched, when the options, shape, storage type or the addresses and strides of
    /// W, q, k or v differ from the saved call's, or `workspace` is not the one it used or
    /// another call used it since.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_saved<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        saved: &FavorSaved,
        shape: &AttentionShape,
        w: &DeviceProjection,
        q: &Rows<'_, T>,
        k: &Rows<'_, T>,
        v: &Rows<'_, T>,
        dout: &Rows<'_, T>,
        dq: &mut RowsMut<'_, T>,
        dk: &mut RowsMut<'_, T>,
        dv: &mut RowsMut<'_, T>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        self.backward_from(
            gpu,
            stream,
            Some(saved),
            shape,
            w,
            q,
            k,
            v,
            dout,
            dq,
            dk,
            dv,
            workspace,
        )
    }

    /// The forward pass, its workspace laid out for the backward when `for_backward` (so that
    /// its stages stay where [`Favor::backward_saved`] reads them); what it left, named.
    #[allow(clippy::too_many_arguments)]
    fn forward_into<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        shape: &AttentionShape,
        w: &DeviceProjection,
        q: &Rows<'_, T>,
        k: &Rows<'_, T>,
        v: &Rows<'_, T>,
        out: &mut RowsMut<'_, T>,
        workspace: &mut Workspace,
        for_backward: bool,
    ) -> Result<FavorSaved> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (wa, _w) = w.arg(gpu, stream)?;
        let (qa, _q) = q.arg(gpu, stream, "q")?;
        let (ka, _k) = k.arg(gpu, stream, "k")?;
        let (va, _v) = v.arg(gpu, stream, "v")?;
        let (oa, _o) = out.arg_mut(gpu, stream, "out")?;
        // Validate before allocating: a plan against address 0 checks every shape.
        plan_favor::<T>(self, &l, shape, &wa, &qa, &ka, &va, &oa, 0)?;
        // The backward's layout has the forward's regions at the same offsets.
        let len = favor_workspace_len(shape, w.features, for_backward)?;
        {
            let buf = workspace.get(gpu, stream, len)?;
            let (work, _ws) = buf.device_ptr_mut(stream);
            plan_favor::<T>(self, &l, shape, &wa, &qa, &ka, &va, &oa, work)?.run(&l)?;
        }
        Ok(FavorSaved {
            call: SavedCall::new::<T>(self, shape, &wa, &qa, &ka, &va),
            workspace: workspace.use_mark(),
        })
    }

    /// The backward pass: every stage, or with `saved` the gradient stages alone, from the
    /// forward stages it names (after checking that it names this call and this workspace,
    /// unused since).
    #[allow(clippy::too_many_arguments)]
    fn backward_from<T: Element>(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        saved: Option<&FavorSaved>,
        shape: &AttentionShape,
        w: &DeviceProjection,
        q: &Rows<'_, T>,
        k: &Rows<'_, T>,
        v: &Rows<'_, T>,
        dout: &Rows<'_, T>,
        dq: &mut RowsMut<'_, T>,
        dk: &mut RowsMut<'_, T>,
        dv: &mut RowsMut<'_, T>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let l = CudaLauncher::new(gpu, stream)?;
        let (wa, _w) = w.arg(gpu, stream)?;
        let (qa, _q) = q.arg(gpu, stream, "q")?;
        let (ka, _k) = k.arg(gpu, stream, "k")?;
        let (va, _v) = v.arg(gpu, stream, "v")?;
        let (da, _d) = dout.arg(gpu, stream, "dout")?;
        let (dqa, _dq) = dq.arg_mut(gpu, stream, "dq")?;
        let (dka, _dk) = dk.arg_mut(gpu, stream, "dk")?;
        let (dva, _dv) = dv.arg_mut(gpu, stream, "dv")?;
        let args = FavorGradArgs {
            dout: da,
            dq: dqa,
            dk: dka,
            dv: dva,
        };
        // Validate before allocating: a plan against address 0 checks every shape.
        plan_favor_backward::<T>(self, &l, shape, &wa, &qa, &ka, &va, &args, 0)?;
        let len = favor_workspace_len(shape, w.features, true)?;
        if let Some(saved) = saved {
            saved.check(
                &SavedCall::new::<T>(self, shape, &wa, &qa, &ka, &va),
                workspace.use_mark(),
            )?;
            // forward_saved sized the workspace for this layout: it keeps its buffer.
            if !workspace.holds(gpu, len) {
                return Err(Error::param(
                    "saved",
                    "the workspace no longer holds the saved forward's stages",
                ));
            }
        }
        let buf = workspace.get(gpu, stream, len)?;
        let (work, _ws) = buf.device_ptr_mut(stream);
        let plan = plan_favor_backward::<T>(self, &l, shape, &wa, &qa, &ka, &va, &args, work)?;
        match saved {
            Some(_) => plan.run_after_forward(&l),
            None => plan.run(&l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(v_addr: u64, causal: bool) -> SavedCall {
        let shape = AttentionShape {
            heads: 2,
            len: 100,
            dim: 16,
            value_dim: 8,
        };
        let m = |addr, cols| MatArg {
            addr,
            rows: 200,
            cols,
            stride: cols,
        };
        let w = ProjectionArg {
            addr: 0x1000,
            features: 32,
            dim: 16,
        };
        let opts = Favor {
            input_scale: 0.5,
            eps: 1e-6,
            guard: 1e-6,
            causal,
        };
        SavedCall::new::<f32>(
            &opts,
            &shape,
            &w,
            &m(0x2000, 16),
            &m(0x3000, 16),
            &m(v_addr, 8),
        )
    }

    #[test]
    fn saved_forward_is_checked_against_the_call_and_the_workspace() {
        let saved = FavorSaved {
            call: call(0x4000, true),
            workspace: (7, 3),
        };
        assert!(saved.check(&call(0x4000, true), (7, 3)).is_ok());
        let saved_error =
            |r: Result<()>| matches!(r, Err(Error::InvalidParameter { name: "saved", .. }));
        assert!(
            saved_error(saved.check(&call(0x5000, true), (7, 3))),
            "v moved"
        );
        assert!(
            saved_error(saved.check(&call(0x4000, false), (7, 3))),
            "options"
        );
        assert!(
            saved_error(saved.check(&call(0x4000, true), (8, 3))),
            "workspace"
        );
        assert!(
            saved_error(saved.check(&call(0x4000, true), (7, 4))),
            "used since"
        );
        let bf16 = SavedCall {
            dtype: DType::BF16,
            ..call(0x4000, true)
        };
        assert!(saved_error(saved.check(&bf16, (7, 3))), "storage type");
    }
}
