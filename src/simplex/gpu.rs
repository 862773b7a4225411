//! The simplex-random-feature kernels on the GPU (kernels/simplex.cu): the fused feature map,
//! launched on the caller's stream.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaViewMut};

use super::{FeatureMap, Projection, Stabilizer};
use crate::device::Gpu;
use crate::element::{DType, Element};
use crate::error::{Error, Result};
use crate::launch::{
    CudaLauncher, Launch, Launcher, MAX_GRID, MatArg, Rows, RowsMut, VecArg, vec_arg, vec_arg_mut,
};
use crate::params::{
    SK_RF_ROWS, SK_RF_SHIFT_GIVEN, SK_RF_SHIFT_MAX_ONLY, SK_RF_SHIFT_NONE, SK_RF_SHIFT_ROW,
    SK_RF_THREADS, sk_rf_features_params,
};

/// Dynamic shared memory the fused row shift may use: the exponents of a block's rows stay
/// there (SK_RF_ROWS x m floats) under the default 48 KiB per block, next to the kernel's
/// 10.5 KiB of static staging. Larger m recomputes the exponents instead.
const FUSED_SMEM_BYTES: u32 = 32 * 1024;

/// Every kernel of the family, for the module check at open time.
pub(crate) fn kernel_names() -> Vec<String> {
    let mut names: Vec<String> = DType::ALL
        .iter()
        .map(|t| format!("sk_rf_features_{}", t.name()))
        .collect();
    names.push("sk_rf_group_shift".to_string());
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

/// The launches of one feature map: one (no shift, or a row shift), or three (group shift:
/// the row maxima, the group maxima, the features with the given shift).
pub(crate) fn plan_features<T: Element>(
    map: &FeatureMap,
    l: &impl Launcher,
    w: &ProjectionArg,
    x: &MatArg,
    out: &MatArg,
    shift: &VecArg,
) -> Result<Vec<Launch<sk_rf_features_params>>> {
    let (m, d) = (w.features, w.dim);
    if x.cols != d {
        return Err(Error::shape(format!(
            "`x` has {} columns but W is {m} x {d}",
            x.cols
        )));
    }
    if (out.rows, out.cols) != (x.rows, m) {
        return Err(Error::shape(format!(
            "`out` is {} x {}, expected {} x {m}",
            out.rows, out.cols, x.rows
        )));
    }
    if shift.len != x.rows {
        return Err(Error::shape(format!(
            "`shift` has {} elements for {} rows",
            shift.len, x.rows
        )));
    }
    map.validate(x.rows)?;
    let (features, dim) = match (u32::try_from(m), u32::try_from(d)) {
        (Ok(f), Ok(k)) => (f, k),
        _ => return Err(Error::TooLarge(format!("W is {m} x {d}"))),
    };
    let tiles = (x.rows as u64).div_ceil(u64::from(SK_RF_ROWS));
    let grid = tiles.min(u64::from(l.sm_count()) * 8).clamp(1, MAX_GRID) as u32;
    let fused_bytes = u64::from(SK_RF_ROWS) * u64::from(features) * 4;
    let fused = fused_bytes <= u64::from(FUSED_SMEM_BYTES);
    let base = sk_rf_features_params {
        x: x.addr as *const c_void,
        w: w.addr as *const f32,
        out: out.addr as *mut c_void,
        shift: shift.addr as *mut f32,
        rows: x.rows as u64,
        x_stride: x.stride as u64,
        out_stride: out.stride as u64,
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
    };
    let kernel = format!("sk_rf_features_{}", T::DTYPE.name());
    let launch = |mode, fused: bool, name: &str| Launch {
        kernel: name.to_string(),
        grid,
        block: SK_RF_THREADS,
        shared_mem_bytes: if fused { fused_bytes as u32 } else { 0 },
        params: sk_rf_features_params {
            mode,
            fused: u32::from(fused),
            ..base
        },
    };
    Ok(match map.stabilizer {
        Stabilizer::None => vec![launch(SK_RF_SHIFT_NONE, false, &kernel)],
        Stabilizer::Row => vec![launch(SK_RF_SHIFT_ROW, fused, &kernel)],
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
                launch(SK_RF_SHIFT_MAX_ONLY, false, &kernel),
                reduce,
                launch(SK_RF_SHIFT_GIVEN, false, &kernel),
            ]
        }
    })
}

impl FeatureMap {
    /// φ(x) for every row of `x` on `stream` (see [`super`] for the formula): `x` is rows x d
    /// in T, `out` rows x m in T, `shift` receives each row's shift (f32; 0 without a
    /// stabilizer). Computed in f32 with W in f32; each feature costs one f32 dot product and
    /// one `expf`. Enqueued without a host synchronization.
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
        let wv = w.w.as_view();
        let (wa, _w) = vec_arg(gpu, stream, &wv, "w")?;
        let wa = ProjectionArg {
            addr: wa.addr,
            features: w.features,
            dim: w.dim,
        };
        let (xa, _x) = x.arg(gpu, stream, "x")?;
        let (oa, _o) = out.arg_mut(gpu, stream, "out")?;
        let (sa, _s) = vec_arg_mut(gpu, stream, shift, "shift")?;
        for launch in plan_features::<T>(self, &l, &wa, &xa, &oa, &sa)? {
            l.launch(&launch)?;
        }
        Ok(())
    }
}
