//! Gram iteration on the GPU: [`dense_bounds`] bounds every matrix of a [`DenseBatch`] in one
//! launch (kernels/gram.cu), on the caller's stream, without a host synchronization.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, ValidAsZeroBits};

use super::{DenseBatch, DeviceBound, Iterations, Precision, Storage};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::launch::{CudaLauncher, Launch, Launcher, VecArg, vec_arg, vec_arg_mut};
use crate::params::{
    SK_GRAM_THREADS, SK_GRAM_WARP_K, SK_GRAM_WARP_TILE, sk_gram_matrix, sk_gram_params,
};

// SAFETY: sk_gram_matrix is the repr(C) struct of kernels/params.h (u64, u32, u32: no padding),
// plain old data the kernels read from device memory.
unsafe impl DeviceRepr for sk_gram_matrix {}
// SAFETY: as above: all-zero bits are a valid sk_gram_matrix.
unsafe impl ValidAsZeroBits for sk_gram_matrix {}

/// Every kernel of the family, for the module check at open time.
pub(crate) fn kernel_names() -> Vec<String> {
    [
        "f32_f32", "f32_f64", "f16_f32", "f16_f64", "bf16_f32", "bf16_f64", "f64_f64",
    ]
    .iter()
    .map(|s| format!("sk_gram_dense_{s}"))
    .collect()
}

/// The arithmetic type's name and size for a storage type and precision.
fn arithmetic<T: Storage>(precision: Precision) -> (&'static str, u32) {
    match precision {
        Precision::Fast if T::NAME != "f64" => ("f32", 4),
        _ => ("f64", 8),
    }
}

/// The device addresses of a batch's tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables {
    pub matrices: u64,
    pub order: u64,
}

/// Plans the launch; None for an empty batch (nothing to launch).
pub(crate) fn plan<T: Storage>(
    l: &impl Launcher,
    batch: &DenseBatch,
    tables: Tables,
    w: &VecArg,
    out: &VecArg,
    precision: Precision,
    iterations: Iterations,
) -> Result<Option<Launch<sk_gram_params>>> {
    let (steps, tolerance) = iterations.check()?;
    if w.len < batch.span {
        return Err(Error::BufferTooSmall {
            buffer: "w",
            needed: batch.span,
            len: w.len,
        });
    }
    if out.len != batch.len() {
        return Err(Error::shape(format!(
            "`out` has {} entries for {} matrices",
            out.len,
            batch.len()
        )));
    }
    if batch.is_empty() {
        return Ok(None);
    }
    let (name, size) = arithmetic::<T>(precision);
    let warp_k = SK_GRAM_WARP_K;
    let warp_smem = if batch.warp_matrices > 0 {
        (SK_GRAM_THREADS / 32) * warp_k * (warp_k + SK_GRAM_WARP_TILE) * size
    } else {
        0
    };
    let kp = batch.block_k_pad;
    let tile = crate::params::SK_GRAM_BLOCK_TILE;
    let needed_block = kp * (kp + tile) * size;
    let budget = l.gram_smem_budget();
    if needed_block > budget {
        return Err(Error::shape(format!(
            "a Gram matrix of side {kp} needs {needed_block} bytes of shared memory in {name}, \
             the device allows {budget}"
        )));
    }
    // Tall block-tier matrices stream their rows through the buffer in panels: give them at
    // least 32 KiB so panels are not a handful of rows.
    let block_smem = if kp > 0 {
        needed_block.max((32 * 1024).min(budget))
    } else {
        0
    };
    let block_capacity = block_smem / size;
    let warp_blocks = batch.warp_blocks();
    let block_matrices = batch.len() as u32 - batch.warp_matrices;
    Ok(Some(Launch {
        kernel: format!("sk_gram_dense_{}_{name}", T::NAME),
        grid: warp_blocks + block_matrices,
        block: SK_GRAM_THREADS,
        shared_mem_bytes: warp_smem.max(block_smem),
        params: sk_gram_params {
            w: w.addr as *const c_void,
            matrices: tables.matrices as *const sk_gram_matrix,
            order: tables.order as *const u32,
            out: out.addr as *mut _,
            tolerance,
            count: batch.len() as u32,
            warp_matrices: batch.warp_matrices,
            warp_blocks,
            iterations: steps,
            certified: u32::from(precision == Precision::Certified),
            block_capacity,
        },
    }))
}

/// A [`DenseBatch`]'s tables in device memory, uploaded once and reused every call.
#[derive(Debug)]
pub struct DeviceDenseBatch {
    batch: DenseBatch,
    matrices: CudaSlice<sk_gram_matrix>,
    order: CudaSlice<u32>,
}

impl DeviceDenseBatch {
    /// Copies the batch's tables to the device (enqueued on `stream`).
    ///
    /// Errors: a stream of another context than `gpu`, a failed allocation or copy.
    pub fn new(gpu: &Gpu, stream: &Arc<CudaStream>, batch: &DenseBatch) -> Result<Self> {
        gpu.check_stream(stream)?;
        // Empty tables still get one entry: cudarc does not allocate zero-length buffers.
        let pad = |n: usize| n.max(1);
        let mut matrices = stream
            .alloc_zeros::<sk_gram_matrix>(pad(batch.matrices.len()))
            .map_err(|e| Error::driver("allocating the matrix table", e))?;
        let mut order = stream
            .alloc_zeros::<u32>(pad(batch.order.len()))
            .map_err(|e| Error::driver("allocating the order table", e))?;
        if !batch.is_empty() {
            stream
                .memcpy_htod(&batch.matrices, &mut matrices)
                .map_err(|e| Error::driver("copying the matrix table", e))?;
            stream
                .memcpy_htod(&batch.order, &mut order)
                .map_err(|e| Error::driver("copying the order table", e))?;
        }
        Ok(DeviceDenseBatch {
            batch: batch.clone(),
            matrices,
            order,
        })
    }

    /// The host description.
    pub fn batch(&self) -> &DenseBatch {
        &self.batch
    }
}

/// Bounds σ₁ of every matrix of `batch` by Gram iteration, reading them from `w` (at the
/// batch's offsets) and writing one [`DeviceBound`] per matrix to `out` (by matrix index).
/// Enqueued on `stream` without a host synchronization; an empty batch is a no-op.
///
/// Per matrix: the upper bound ‖W‖_{2^{T+1}} and the lower bound of [`super`], with every
/// Gram power rescaled by exact powers of two (any finite input scale is safe). A matrix with
/// a zero side or all zeros gives 0; a NaN entry NaN bounds, an infinite one +∞ (that matrix
/// only).
///
/// Errors: `w` shorter than [`DenseBatch::span`], `out` not one entry per matrix, invalid
/// [`Iterations`], a Gram matrix larger than the device's shared memory, buffers or stream of
/// another context.
pub fn dense_bounds<T: Storage>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    batch: &DeviceDenseBatch,
    w: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, DeviceBound>,
    precision: Precision,
    iterations: Iterations,
) -> Result<()> {
    let l = CudaLauncher::new(gpu, stream)?;
    let (wa, _w) = vec_arg(gpu, stream, w, "w")?;
    let (oa, _out) = vec_arg_mut(gpu, stream, out, "out")?;
    let (matrices, order) = (batch.matrices.as_view(), batch.order.as_view());
    let (ma, _m) = vec_arg(gpu, stream, &matrices, "matrices")?;
    let (ra, _r) = vec_arg(gpu, stream, &order, "order")?;
    let tables = Tables {
        matrices: ma.addr,
        order: ra.addr,
    };
    match plan::<T>(&l, &batch.batch, tables, &wa, &oa, precision, iterations)? {
        Some(launch) => l.launch(&launch),
        None => Ok(()),
    }
}
