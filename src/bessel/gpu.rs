//! The log-Bessel family on the GPU: one element-wise kernel per [`Function`] and storage type
//! (kernels/bessel.cu), launched on the caller's stream. The f64 kernels compute in f64, as do the
//! f32 kernels of every function but log I and log K; those two compute in f32 where f32 rounding
//! meets their target (|err| / max(1, |exact|) <= 1e-6, tested at 35 000 points covering every
//! boundary of the scheme) and in f64 elsewhere (kernels/bessel.cu, "f32 evaluation").

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaStream, CudaView, CudaViewMut};

use super::{Function, Real};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::launch::{CudaLauncher, Launch, Launcher, VecArg, vec_arg, vec_arg_mut};
use crate::params::{SK_BESSEL_THREADS, SK_BESSEL_WARP_BATCH, sk_bessel_params};

/// The orders of a device batch: one for every element, or a device buffer of one per element.
#[derive(Debug)]
pub enum DeviceOrders<'a, 'b, T> {
    /// The same order (or dimension d) for every element.
    All(f64),
    /// One per element, same length as the arguments.
    Each(&'a CudaView<'b, T>),
}

/// Every kernel of the family, for the module check at open time.
pub(crate) fn kernel_names() -> Vec<String> {
    Function::ALL
        .iter()
        .flat_map(|f| ["f64", "f32"].map(|t| format!("sk_bessel_{}_{t}", f.name())))
        .collect()
}

/// Plans out[i] = f(order_i, x[i]); None for an empty batch (nothing to launch).
pub(crate) fn plan<T: Real>(
    f: Function,
    l: &impl Launcher,
    orders: Result<VecArg, f64>,
    x: &VecArg,
    out: &VecArg,
) -> Result<Option<Launch<sk_bessel_params>>> {
    if out.len != x.len {
        return Err(Error::shape(format!(
            "`out` has {} elements, `x` {}",
            out.len, x.len
        )));
    }
    if let Ok(o) = &orders
        && o.len != x.len
    {
        return Err(Error::shape(format!(
            "{} orders for {} arguments",
            o.len, x.len
        )));
    }
    if x.len == 0 {
        return Ok(None);
    }
    let n = x.len as u64;
    // Every function but κ̂ sorts each warp's batch of SK_BESSEL_WARP_BATCH elements by
    // region (kernels/bessel.cu): one batch per warp; κ̂ one element per thread.
    let per_block = match f {
        Function::VmfKappaMle => SK_BESSEL_THREADS,
        _ => (SK_BESSEL_THREADS / 32) * SK_BESSEL_WARP_BATCH,
    };
    let blocks = n.div_ceil(u64::from(per_block));
    let grid = blocks.min(u64::from(l.sm_count()) * 64).max(1) as u32;
    let (orders_ptr, order) = match orders {
        Ok(o) => (o.addr as *const c_void, 0.0),
        Err(v) => (std::ptr::null(), v),
    };
    Ok(Some(Launch {
        kernel: format!("sk_bessel_{}_{}", f.name(), T::NAME),
        grid,
        block: SK_BESSEL_THREADS,
        shared_mem_bytes: 0,
        params: sk_bessel_params {
            orders: orders_ptr,
            x: x.addr as *const c_void,
            out: out.addr as *mut c_void,
            order,
            n,
        },
    }))
}

/// Evaluates `f` element-wise on `stream`: `out[i] = f(order_i, x[i])`, in f64, or for f32 storage
/// within the f32 targets (log I and log K partly in f32 arithmetic, see the module documentation;
/// a broadcast order that f32 does not hold exactly is used as given, in f64). Enqueued without a
/// host synchronization; an empty batch is a no-op.
///
/// Errors: `out` or per-element orders of another length than `x`, buffers or stream of another
/// context. Invalid elements (NaN, x < 0, …) give NaN in their place only.
pub fn evaluate<T: Real>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    f: Function,
    orders: DeviceOrders<'_, '_, T>,
    x: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, T>,
) -> Result<()> {
    let l = CudaLauncher::new(gpu, stream)?;
    // The staged orders (their guard lives until the launch is enqueued), or the broadcast value.
    let (orders_arg, _orders_guard) = match orders {
        DeviceOrders::Each(v) => {
            let (a, guard) = vec_arg(gpu, stream, v, "orders")?;
            (Ok(a), Some(guard))
        }
        DeviceOrders::All(v) => (Err(v), None),
    };
    let (xa, _x) = vec_arg(gpu, stream, x, "x")?;
    let (oa, _out) = vec_arg_mut(gpu, stream, out, "out")?;
    match plan::<T>(f, &l, orders_arg, &xa, &oa)? {
        Some(launch) => l.launch(&launch),
        None => Ok(()),
    }
}
