//! Gram iteration on the GPU (kernels/gram.cu), on the caller's stream, without a host
//! synchronization: [`dense_bounds`] bounds every on-chip matrix of a [`DenseBatch`] in one
//! launch per kind of side it holds (≤ 16, 33..=64 and the rest have kernels of their own);
//! [`conv_bounds`] every layer of a [`ConvBatch`] in two (all frequency blocks, then each
//! layer's max).

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, ValidAsZeroBits};

use super::{
    ConvBatch, DenseBatch, DeviceBound, Iterations, LargeSuffix, LargeTable, Precision, Schedule,
    Storage,
};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::launch::{CudaLauncher, Launch, Launcher, MAX_GRID, VecArg, vec_arg, vec_arg_mut};
use crate::params::{
    SK_GRAM_BLOCK_TILE, SK_GRAM_CONV_ITEMS, SK_GRAM_CONV_REDUCE, SK_GRAM_LARGE_CHUNKS,
    SK_GRAM_LARGE_FINISH, SK_GRAM_LARGE_FORM, SK_GRAM_LARGE_GRADX, SK_GRAM_LARGE_GRAM,
    SK_GRAM_LARGE_PGRAM, SK_GRAM_LARGE_SCAN, SK_GRAM_LARGE_STATS, SK_GRAM_MAX_K,
    SK_GRAM_MAX_K_COMPLEX64, SK_GRAM_MAX_K_CONV_GRAD, SK_GRAM_MAX_K_GRAD64, SK_GRAM_MID_K,
    SK_GRAM_SMALL_K, SK_GRAM_SMALL_PAD, SK_GRAM_THREADS, SK_GRAM_WARP_K, SK_GRAM_WARP_TILE,
    sk_gram_conv_item, sk_gram_large_item, sk_gram_matrix, sk_gram_params,
};

// SAFETY: sk_gram_matrix and sk_gram_conv_item are repr(C) structs of kernels/params.h holding
// only integers (no padding), plain old data the kernels read from device memory; all-zero bits
// are valid values.
unsafe impl DeviceRepr for sk_gram_matrix {}
// SAFETY: as above.
unsafe impl ValidAsZeroBits for sk_gram_matrix {}
// SAFETY: as above.
unsafe impl DeviceRepr for sk_gram_conv_item {}
// SAFETY: as above.
unsafe impl ValidAsZeroBits for sk_gram_conv_item {}
// SAFETY: as above (sk_gram_large_item: integers only, no padding).
unsafe impl DeviceRepr for sk_gram_large_item {}
// SAFETY: as above.
unsafe impl ValidAsZeroBits for sk_gram_large_item {}

const KERNEL_TYPES: [&str; 7] = [
    "f32_f32", "f32_f64", "f16_f32", "f16_f64", "bf16_f32", "bf16_f64", "f64_f64",
];

/// Every kernel of the family, for the module check at open time.
pub(crate) fn kernel_names() -> Vec<String> {
    [
        "dense",
        "dense_small",
        "dense_mid",
        "dense_grad",
        "conv",
        "conv_grad",
        "large_dense",
        "large_conv",
        "large_dense_product",
        "large_conv_product",
    ]
    .iter()
    .flat_map(|kind| {
        KERNEL_TYPES
            .iter()
            .map(move |t| format!("sk_gram_{kind}_{t}"))
    })
    .collect()
}

/// The arithmetic type's name and size for a storage type and precision.
fn arithmetic<T: Storage>(precision: Precision) -> (&'static str, u32) {
    match precision {
        Precision::Fast if T::NAME != "f64" => ("f32", 4),
        _ => ("f64", 8),
    }
}

/// What a launch bounds: dense matrices, or the frequency blocks of convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dense,
    /// Dense bounds and their gradients.
    DenseGrad,
    Conv,
    /// Convolution bounds and their gradients.
    ConvGrad,
}

/// Device addresses of a batch's tables and outputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables {
    /// sk_gram_matrix or sk_gram_conv_item entries.
    pub items: u64,
    pub order: u64,
    /// One sk_gram_bound per item: the results (dense) or the per-block scratch (conv).
    pub item_out: u64,
    /// Convolutions: [layers + 1] first item per layer, and the per-layer results.
    pub layer_start: u64,
    pub layer_out: u64,
    /// Gradients: d upper / d w in w's layout (0 otherwise).
    pub grad: u64,
    /// The large tier's table (its first entry), and the workspace.
    pub large: u64,
    pub work: VecArg,
    /// Convolution gradients: [layers] maximizing blocks, the layer order of the gradient
    /// launch, and [layers] scratch bounds.
    pub layer_argmax: u64,
    pub grad_order: u64,
    pub grad_out: u64,
}

impl Tables {
    /// No tables (for fields a kind does not use: override with `..`).
    pub(crate) fn none() -> Self {
        Tables {
            items: 0,
            order: 0,
            item_out: 0,
            layer_start: 0,
            layer_out: 0,
            grad: 0,
            large: 0,
            work: VecArg { addr: 0, len: 0 },
            layer_argmax: 0,
            grad_order: 0,
            grad_out: 0,
        }
    }
}

/// One pass of the large tier over a suffix of its table, and its workspace layout (doubles,
/// then field elements, then the gradients' P pairs; each region 256-byte aligned).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LargePass {
    pub suffix: LargeSuffix,
    /// With gradients: PGRAM and GRADX phases, and the P pairs.
    pub grad: bool,
    pub elems_at: usize,
    pub grad_at: usize,
    pub bytes: usize,
}

impl LargePass {
    fn new(large: &LargeTable, limit: u32, wide: bool, elem: usize, grad: bool) -> Self {
        let suffix = large.suffix(limit, wide);
        let round = |b: usize| b.div_ceil(256) * 256;
        let elems_at = round(suffix.doubles * 8);
        let grad_at = round(elems_at + suffix.elems * elem);
        let bytes = if suffix.count == 0 {
            0
        } else if grad {
            grad_at + suffix.grad_elems * elem
        } else {
            grad_at
        };
        LargePass {
            suffix,
            grad,
            elems_at,
            grad_at,
            bytes,
        }
    }
}

/// What one call needs besides its tables: the on-chip limit, the large tier's passes and the
/// workspace they share (one after the other).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallShape {
    /// The on-chip kernels' largest side in this call's arithmetic.
    pub on_chip_k: u32,
    /// The bounds (dense gradients too).
    pub bounds: LargePass,
    /// Convolution gradients: each layer's maximizing block above the gradient kernels' limit.
    pub conv_grad: Option<LargePass>,
    pub work_bytes: usize,
}

/// Splits a call between the on-chip kernels and the large tier.
pub(crate) fn call_shape<T: Storage>(
    kind: Kind,
    large: &LargeTable,
    precision: Precision,
) -> CallShape {
    let (_, real_size) = arithmetic::<T>(precision);
    let (on_chip_k, elem) = match kind {
        Kind::Dense => (SK_GRAM_MAX_K, real_size),
        Kind::DenseGrad if real_size == 8 => (SK_GRAM_MAX_K_GRAD64, 8),
        Kind::DenseGrad => (SK_GRAM_MAX_K, 4),
        Kind::Conv | Kind::ConvGrad if real_size == 8 => (SK_GRAM_MAX_K_COMPLEX64, 16),
        Kind::Conv | Kind::ConvGrad => (SK_GRAM_MAX_K, 8),
    };
    let wide = matches!(kind, Kind::Dense | Kind::DenseGrad) && real_size == 4;
    let bounds = LargePass::new(
        large,
        on_chip_k,
        wide,
        elem as usize,
        kind == Kind::DenseGrad,
    );
    let conv_grad = (kind == Kind::ConvGrad)
        .then(|| LargePass::new(large, SK_GRAM_MAX_K_CONV_GRAD, false, elem as usize, true));
    CallShape {
        on_chip_k,
        bounds,
        conv_grad,
        work_bytes: bounds.bytes.max(conv_grad.map_or(0, |p| p.bytes)),
    }
}

/// Whether a large-tier launch runs in the products kernel (`sk_gram_large_*_product_*`): the
/// products whose operands both come from the workspace (GRAM for t >= 2 or for convolutions,
/// PGRAM). Dense step 1 reads W through its source and stays in the phase kernel. The kernels
/// check this choice (`large_direct` in kernels/gram.cu).
fn large_direct(step: u32, t: u32, conv: bool) -> bool {
    step == SK_GRAM_LARGE_PGRAM || (step == SK_GRAM_LARGE_GRAM && (t >= 2 || conv))
}

/// The large tier's launches for one pass (kernels/params.h): SCAN, FORM (convolutions), T
/// steps of GRAM, STATS (and PGRAM with gradients), then FINISH (bounds) and/or GRADX, each in
/// the phase kernel `sk_gram_large_{dense,conv}_{types}` or the products kernel
/// `sk_gram_large_{dense,conv}_product_{types}` (see [`large_direct`]); `types` is e.g.
/// `f32_f32`.
#[allow(clippy::too_many_arguments)]
fn large_launches(
    types: &str,
    pass: &LargePass,
    tables: &Tables,
    params: sk_gram_params,
    conv: bool,
    steps: u32,
    finish: bool,
    out: &mut Vec<Launch<sk_gram_params>>,
) -> Result<()> {
    let suffix = pass.suffix;
    if suffix.count == 0 {
        return Ok(());
    }
    if tables.work.len < pass.bytes {
        return Err(Error::BufferTooSmall {
            buffer: "workspace",
            needed: pass.bytes,
            len: tables.work.len,
        });
    }
    let entry = std::mem::size_of::<sk_gram_large_item>() as u64;
    let base = tables.work.addr;
    let params = sk_gram_params {
        large: (tables.large + suffix.start as u64 * entry) as *const _,
        large_count: suffix.count,
        work: base as *mut f64,
        work_elems: (base + pass.elems_at as u64) as *mut c_void,
        work_grad: if pass.grad {
            (base + pass.grad_at as u64) as *mut c_void
        } else {
            std::ptr::null_mut()
        },
        grad: if pass.grad {
            params.grad
        } else {
            std::ptr::null_mut()
        },
        ..params
    };
    let family = if conv { "conv" } else { "dense" };
    let launch = |step: u32, t: u32, grid: u32| Launch {
        kernel: if large_direct(step, t, conv) {
            format!("sk_gram_large_{family}_product_{types}")
        } else {
            format!("sk_gram_large_{family}_{types}")
        },
        grid,
        block: SK_GRAM_THREADS,
        shared_mem_bytes: 0,
        params: sk_gram_params { step, t, ..params },
    };
    let chunks = suffix
        .count
        .checked_mul(SK_GRAM_LARGE_CHUNKS)
        .filter(|&g| u64::from(g) <= MAX_GRID)
        .ok_or_else(|| Error::TooLarge(format!("{} large matrices", suffix.count)))?;
    out.push(launch(SK_GRAM_LARGE_SCAN, 0, chunks));
    if conv {
        out.push(launch(SK_GRAM_LARGE_FORM, 0, chunks));
    }
    for t in 1..=steps.max(1) {
        out.push(launch(SK_GRAM_LARGE_GRAM, t, suffix.tiles));
        out.push(launch(SK_GRAM_LARGE_STATS, t, suffix.count));
        if pass.grad && t >= 2 {
            out.push(launch(SK_GRAM_LARGE_PGRAM, t, suffix.tiles));
        }
    }
    if finish {
        out.push(launch(SK_GRAM_LARGE_FINISH, 0, suffix.count));
    }
    if pass.grad {
        out.push(launch(SK_GRAM_LARGE_GRADX, 0, suffix.grad_tiles));
    }
    Ok(())
}

/// The on-chip items one launch serves: warp items `warps` (positions in the schedule's warp
/// tier) and block items `blocks` (positions in its block tier, ascending side), with the side
/// its kernel sizes a warp's buffer for and the padding of that buffer's rows (a warp's buffer
/// is `warp_k * (warp_k + warp_pad)` elements: the warp tile side in the kernels of both tiers,
/// `SK_GRAM_SMALL_PAD` in the small kernel; see `serve` in kernels/gram.cu).
struct Served {
    warps: std::ops::Range<u32>,
    blocks: std::ops::Range<u32>,
    warp_k: u32,
    warp_pad: u32,
}

/// The launch of the on-chip kernel `kernel` over the `served` items of `schedule`, each team
/// with `buffers` Gram-sized buffers of `size`-byte elements; None when it serves nothing.
#[allow(clippy::too_many_arguments)]
fn on_chip_launch(
    l: &impl Launcher,
    kernel: String,
    schedule: &Schedule,
    served: Served,
    buffers: u32,
    size: u32,
    params: sk_gram_params,
    arithmetic: &str,
) -> Result<Option<Launch<sk_gram_params>>> {
    let Served {
        warps,
        blocks,
        warp_k,
        warp_pad,
    } = served;
    let warp_items = warps.len() as u32;
    let block_items = blocks.len() as u32;
    let warp_blocks = warp_items.div_ceil(SK_GRAM_THREADS / 32);
    let kp = if block_items > 0 {
        schedule
            .block_side(blocks.end - 1)
            .div_ceil(SK_GRAM_BLOCK_TILE)
            * SK_GRAM_BLOCK_TILE
    } else {
        0
    };
    let warp_smem = if warp_items > 0 {
        buffers * (SK_GRAM_THREADS / 32) * warp_k * (warp_k + warp_pad) * size
    } else {
        0
    };
    let gram_bytes = kp * (kp + SK_GRAM_BLOCK_TILE) * size;
    let needed_block = buffers * gram_bytes;
    let budget = l.gram_smem_budget();
    if needed_block.max(warp_smem) > budget {
        return Err(Error::shape(format!(
            "a Gram matrix of side {kp} needs {} bytes of shared memory in {arithmetic}, the \
             device allows {budget}",
            needed_block.max(warp_smem)
        )));
    }
    // Tall block-tier matrices stream their rows through the (first) buffer in panels: give
    // it at least 32 KiB so panels are not a handful of rows.
    let extra = needed_block - gram_bytes;
    let block_smem = if kp > 0 {
        needed_block.max((32 * 1024 + extra).min(budget))
    } else {
        0
    };
    let grid = warp_blocks + block_items;
    if grid == 0 {
        return Ok(None);
    }
    // The kernel reads warp item w at order[w] and block item j at order[warp_matrices +
    // block_first + j], from the table's suffix at the first warp item served.
    let first = warps.start;
    Ok(Some(Launch {
        kernel,
        grid,
        block: SK_GRAM_THREADS,
        shared_mem_bytes: warp_smem.max(block_smem),
        params: sk_gram_params {
            order: params.order.wrapping_add(first as usize),
            count: schedule.len() as u32 - first,
            warp_matrices: warp_items,
            warp_blocks,
            block_first: schedule.warp_items - warps.end + blocks.start,
            block_capacity: (block_smem - extra.min(block_smem)) / size,
            ..params
        },
    }))
}

/// Plans the launches (the on-chip items; the large tier's phases; for convolutions the
/// per-layer max, and for their gradients the maximizing blocks again); empty when there is
/// nothing to do. `w` is the storage buffer, `span` the elements the items read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan<T: Storage>(
    l: &impl Launcher,
    kind: Kind,
    schedule: &Schedule,
    large: &LargeTable,
    span: usize,
    layers: usize,
    tables: Tables,
    w: &VecArg,
    precision: Precision,
    iterations: Iterations,
) -> Result<Vec<Launch<sk_gram_params>>> {
    let (steps, tolerance) = iterations.check()?;
    if w.len < span {
        return Err(Error::BufferTooSmall {
            buffer: "w",
            needed: span,
            len: w.len,
        });
    }
    let (name, real_size) = arithmetic::<T>(precision);
    let shape = call_shape::<T>(kind, large, precision);
    let conv = matches!(kind, Kind::Conv | Kind::ConvGrad);
    let (prefix, size) = match kind {
        Kind::Dense => ("dense", real_size),
        Kind::DenseGrad => ("dense_grad", real_size),
        Kind::Conv | Kind::ConvGrad => ("conv", 2 * real_size),
    };
    let params = sk_gram_params {
        w: w.addr as *const c_void,
        items: tables.items as *const c_void,
        order: tables.order as *const u32,
        out: tables.item_out as *mut _,
        layer_start: tables.layer_start as *const u32,
        layer_out: tables.layer_out as *mut _,
        tolerance,
        count: 0,
        warp_matrices: 0,
        warp_blocks: 0,
        iterations: steps,
        certified: u32::from(precision == Precision::Certified),
        block_capacity: 0,
        block_first: 0,
        layers: layers as u32,
        grad: tables.grad as *mut c_void,
        step: SK_GRAM_CONV_ITEMS,
        t: 0,
        large_count: 0,
        reserved: 0,
        large: std::ptr::null(),
        work: std::ptr::null_mut(),
        work_elems: std::ptr::null_mut(),
        layer_argmax: std::ptr::null_mut(),
        work_grad: std::ptr::null_mut(),
    };
    let kernel = format!("sk_gram_{prefix}_{}_{name}", T::NAME);
    let buffers = if kind == Kind::DenseGrad { 2 } else { 1 };
    let mut launches = Vec::new();
    // Convolution gradients: the item launch only bounds (its gradient pass comes later).
    let item_params = sk_gram_params {
        grad: if kind == Kind::ConvGrad {
            std::ptr::null_mut()
        } else {
            params.grad
        },
        ..params
    };
    let on_chip = schedule.block_items_up_to(shape.on_chip_k);
    let parts = if kind == Kind::Dense {
        // The sides that dominate batches of small matrices get one-tier kernels (more blocks
        // per SM than the kernel holding both tiers allows): warps for sides <= SK_GRAM_SMALL_K,
        // blocks for sides <= SK_GRAM_MID_K; the kernel of both tiers serves the rest.
        let small = schedule.small_items;
        let mid = schedule.block_items_up_to(SK_GRAM_MID_K).min(on_chip);
        let kernel_of = |prefix: &str| format!("sk_gram_{prefix}_{}_{name}", T::NAME);
        vec![
            (
                kernel_of("dense_small"),
                Served {
                    warps: 0..small,
                    blocks: 0..0,
                    warp_k: SK_GRAM_SMALL_K,
                    warp_pad: SK_GRAM_SMALL_PAD,
                },
            ),
            (
                kernel_of("dense_mid"),
                Served {
                    warps: 0..0,
                    blocks: 0..mid,
                    warp_k: 0,
                    warp_pad: 0,
                },
            ),
            (
                kernel.clone(),
                Served {
                    warps: small..schedule.warp_items,
                    blocks: mid..on_chip,
                    warp_k: SK_GRAM_WARP_K,
                    warp_pad: SK_GRAM_WARP_TILE,
                },
            ),
        ]
    } else {
        vec![(
            kernel.clone(),
            Served {
                warps: 0..schedule.warp_items,
                blocks: 0..on_chip,
                warp_k: SK_GRAM_WARP_K,
                warp_pad: SK_GRAM_WARP_TILE,
            },
        )]
    };
    for (kernel, served) in parts {
        launches.extend(on_chip_launch(
            l,
            kernel,
            schedule,
            served,
            buffers,
            size,
            item_params,
            name,
        )?);
    }
    large_launches(
        &format!("{}_{name}", T::NAME),
        &shape.bounds,
        &tables,
        params,
        conv,
        steps,
        true,
        &mut launches,
    )?;
    if conv && layers > 0 {
        let warps = SK_GRAM_THREADS / 32;
        launches.push(Launch {
            kernel: kernel.clone(),
            grid: (layers as u32).div_ceil(warps),
            block: SK_GRAM_THREADS,
            shared_mem_bytes: 0,
            params: sk_gram_params {
                step: SK_GRAM_CONV_REDUCE,
                layer_argmax: tables.layer_argmax as *mut u32,
                ..params
            },
        });
    }
    Ok(launches)
}

/// The per-layer order of a convolution gradient launch: one team per non-empty layer, warp
/// teams first in f32 arithmetic; in f64 every layer gets a block (eight warps' two complex
/// f64 buffers would not fit in shared memory).
pub(crate) fn conv_grad_schedule<T: Storage>(batch: &ConvBatch, precision: Precision) -> &Schedule {
    if arithmetic::<T>(precision).1 == 8 {
        &batch.grad_blocks
    } else {
        &batch.grad_schedule
    }
}

/// The convolution gradient launch (after [`plan`]'s launches for [`Kind::ConvGrad`]).
pub(crate) fn plan_conv_grad<T: Storage>(
    l: &impl Launcher,
    batch: &ConvBatch,
    tables: Tables,
    w: &VecArg,
    precision: Precision,
    iterations: Iterations,
) -> Result<Vec<Launch<sk_gram_params>>> {
    let (steps, tolerance) = iterations.check()?;
    let (name, real_size) = arithmetic::<T>(precision);
    let schedule = conv_grad_schedule::<T>(batch, precision);
    let params = sk_gram_params {
        w: w.addr as *const c_void,
        items: tables.items as *const c_void,
        order: tables.grad_order as *const u32,
        out: tables.grad_out as *mut _,
        layer_start: tables.layer_start as *const u32,
        layer_out: std::ptr::null_mut(),
        tolerance,
        count: 0,
        warp_matrices: 0,
        warp_blocks: 0,
        iterations: steps,
        certified: u32::from(precision == Precision::Certified),
        block_capacity: 0,
        block_first: 0,
        layers: batch.len() as u32,
        grad: tables.grad as *mut c_void,
        step: SK_GRAM_CONV_ITEMS,
        t: 0,
        large_count: 0,
        reserved: 0,
        large: std::ptr::null(),
        work: std::ptr::null_mut(),
        work_elems: std::ptr::null_mut(),
        layer_argmax: tables.layer_argmax as *mut u32,
        work_grad: std::ptr::null_mut(),
    };
    let mut launches: Vec<_> = on_chip_launch(
        l,
        format!("sk_gram_conv_grad_{}_{name}", T::NAME),
        schedule,
        Served {
            warps: 0..schedule.warp_items,
            blocks: 0..schedule.block_items_up_to(SK_GRAM_MAX_K_CONV_GRAD),
            warp_k: SK_GRAM_WARP_K,
            warp_pad: SK_GRAM_WARP_TILE,
        },
        2,
        2 * real_size,
        params,
        name,
    )?
    .into_iter()
    .collect();
    // Larger blocks: the large tier again, only each layer's maximizing block working.
    let shape = call_shape::<T>(Kind::ConvGrad, &batch.large, precision);
    if let Some(pass) = shape.conv_grad {
        large_launches(
            &format!("{}_{name}", T::NAME),
            &pass,
            &tables,
            sk_gram_params {
                order: std::ptr::null(),
                out: std::ptr::null_mut(),
                ..params
            },
            true,
            steps,
            false,
            &mut launches,
        )?;
    }
    Ok(launches)
}

/// Copies a host table to a new device buffer (one zero entry for an empty table: cudarc does
/// not allocate zero-length buffers).
fn upload<V: DeviceRepr + ValidAsZeroBits + Clone>(
    stream: &Arc<CudaStream>,
    host: &[V],
    what: &'static str,
) -> Result<CudaSlice<V>> {
    let mut buf = stream
        .alloc_zeros::<V>(host.len().max(1))
        .map_err(|e| Error::driver(what, e))?;
    if !host.is_empty() {
        stream
            .memcpy_htod(host, &mut buf)
            .map_err(|e| Error::driver(what, e))?;
    }
    Ok(buf)
}

/// Grows a large-tier workspace to at least `bytes` (its contents need not survive: every
/// phase writes before it reads).
fn ensure_work(
    stream: &Arc<CudaStream>,
    work: &mut Option<CudaSlice<u8>>,
    bytes: usize,
) -> Result<()> {
    if bytes > 0 && work.as_ref().is_none_or(|w| w.len() < bytes) {
        *work = None; // free first: the old and new buffers need not coexist
        *work = Some(
            stream
                .alloc_zeros::<u8>(bytes)
                .map_err(|e| Error::driver("allocating the large-matrix workspace", e))?,
        );
    }
    Ok(())
}

/// A [`DenseBatch`]'s tables in device memory, uploaded once and reused every call, and the
/// workspace of its large matrices (smaller side above [`super::MAX_ON_CHIP_K`]: two Gram
/// matrices each, allocated at the first call that needs it and grown as needed).
#[derive(Debug)]
pub struct DeviceDenseBatch {
    batch: DenseBatch,
    matrices: CudaSlice<sk_gram_matrix>,
    order: CudaSlice<u32>,
    large: CudaSlice<sk_gram_large_item>,
    work: Option<CudaSlice<u8>>,
}

impl DeviceDenseBatch {
    /// Copies the batch's tables to the device (enqueued on `stream`).
    ///
    /// Errors: a stream of another context than `gpu`, a failed allocation or copy.
    pub fn new(gpu: &Gpu, stream: &Arc<CudaStream>, batch: &DenseBatch) -> Result<Self> {
        gpu.check_stream(stream)?;
        Ok(DeviceDenseBatch {
            batch: batch.clone(),
            matrices: upload(stream, &batch.matrices, "uploading the matrix table")?,
            order: upload(stream, &batch.schedule.order, "uploading the order table")?,
            large: upload(
                stream,
                &batch.large.entries,
                "uploading the large-matrix table",
            )?,
            work: None,
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
/// Matrices whose smaller side exceeds [`super::MAX_ON_CHIP_K`] take the large tier (see
/// [`super`]): its workspace (per matrix two k_pad² Gram matrices in the arithmetic type and
/// ~k_pad²/64 f64 partial sums, k_pad = k rounded up to 128) is allocated in `batch` at the
/// first call that needs it, grown when a later call needs more, and reused; a call's launches
/// only read what the same call wrote in it.
///
/// Errors: `w` shorter than [`DenseBatch::span`], `out` not one entry per matrix, invalid
/// [`Iterations`], a failed workspace allocation, buffers or stream of another context.
pub fn dense_bounds<T: Storage>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    batch: &mut DeviceDenseBatch,
    w: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, DeviceBound>,
    precision: Precision,
    iterations: Iterations,
) -> Result<()> {
    let l = CudaLauncher::new(gpu, stream)?;
    let (wa, _w) = vec_arg(gpu, stream, w, "w")?;
    let (oa, _out) = vec_arg_mut(gpu, stream, out, "out")?;
    check_out(&oa, batch.batch.len(), "matrices")?;
    iterations.check()?;
    let shape = call_shape::<T>(Kind::Dense, &batch.batch.large, precision);
    ensure_work(stream, &mut batch.work, shape.work_bytes)?;
    let (matrices, order, large) = (
        batch.matrices.as_view(),
        batch.order.as_view(),
        batch.large.as_view(),
    );
    let (ma, _m) = vec_arg(gpu, stream, &matrices, "matrices")?;
    let (ra, _r) = vec_arg(gpu, stream, &order, "order")?;
    let (la, _l) = vec_arg(gpu, stream, &large, "large")?;
    let mut work_view = batch.work.as_mut().map(|w| w.as_view_mut());
    let (xa, _x) = match work_view.as_mut() {
        Some(v) => {
            let (a, g) = vec_arg_mut(gpu, stream, v, "workspace")?;
            (a, Some(g))
        }
        None => (VecArg { addr: 0, len: 0 }, None),
    };
    let tables = Tables {
        items: ma.addr,
        order: ra.addr,
        item_out: oa.addr,
        layer_start: 0,
        layer_out: 0,
        grad: 0,
        large: la.addr,
        work: xa,
        ..Tables::none()
    };
    let b = &batch.batch;
    for launch in plan::<T>(
        &l,
        Kind::Dense,
        &b.schedule,
        &b.large,
        b.span(),
        0,
        tables,
        &wa,
        precision,
        iterations,
    )? {
        l.launch(&launch)?;
    }
    Ok(())
}

/// [`dense_bounds`] and, for Lipschitz regularization, the gradient of every matrix's upper
/// bound with respect to its entries, written to `grad` in `w`'s layout (each matrix at its
/// offset; entries between matrices are left as they are):
///
/// ```text
/// ∂‖W‖_p/∂W = W (WᵀW)^{p/2−1} / ‖W‖_p^{p−1},  p = 2^{T+1}   (T = 0: W / ‖W‖_F)
/// ```
///
/// formed on chip as W·M₁M₂…M_T scaled so that ⟨W, ∂⟩ = ‖W‖_p (Euler's identity for a norm),
/// with the Schatten estimate of the fast path (in certified mode too: the certified bound's
/// inflation is not differentiated). Rounded once to the storage type. A zero matrix gets the
/// zero subgradient; NaN or infinite entries NaN gradients (that matrix only).
///
/// Matrices above the on-chip gradient limit (128, or 64 in f64 arithmetic: two Gram-sized
/// buffers must fit in shared memory) take the large tier, which keeps P in the workspace.
///
/// Errors: as [`dense_bounds`]; `grad` not the length of `w`; matrices that overlap in `w`
/// (their gradients would collide).
#[allow(clippy::too_many_arguments)]
pub fn dense_bounds_and_gradients<T: Storage>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    batch: &mut DeviceDenseBatch,
    w: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, DeviceBound>,
    grad: &mut CudaViewMut<'_, T>,
    precision: Precision,
    iterations: Iterations,
) -> Result<()> {
    let l = CudaLauncher::new(gpu, stream)?;
    let (wa, _w) = vec_arg(gpu, stream, w, "w")?;
    let (oa, _out) = vec_arg_mut(gpu, stream, out, "out")?;
    let (ga, _g) = vec_arg_mut(gpu, stream, grad, "grad")?;
    check_out(&oa, batch.batch.len(), "matrices")?;
    check_grad(&batch.batch, &ga, &wa)?;
    iterations.check()?;
    let shape = call_shape::<T>(Kind::DenseGrad, &batch.batch.large, precision);
    ensure_work(stream, &mut batch.work, shape.work_bytes)?;
    let (matrices, order, large) = (
        batch.matrices.as_view(),
        batch.order.as_view(),
        batch.large.as_view(),
    );
    let (ma, _m) = vec_arg(gpu, stream, &matrices, "matrices")?;
    let (ra, _r) = vec_arg(gpu, stream, &order, "order")?;
    let (la, _l) = vec_arg(gpu, stream, &large, "large")?;
    let mut work_view = batch.work.as_mut().map(|w| w.as_view_mut());
    let (xa, _x) = match work_view.as_mut() {
        Some(v) => {
            let (a, g) = vec_arg_mut(gpu, stream, v, "workspace")?;
            (a, Some(g))
        }
        None => (VecArg { addr: 0, len: 0 }, None),
    };
    let tables = Tables {
        items: ma.addr,
        order: ra.addr,
        item_out: oa.addr,
        layer_start: 0,
        layer_out: 0,
        grad: ga.addr,
        large: la.addr,
        work: xa,
        ..Tables::none()
    };
    let b = &batch.batch;
    for launch in plan::<T>(
        &l,
        Kind::DenseGrad,
        &b.schedule,
        &b.large,
        b.span(),
        0,
        tables,
        &wa,
        precision,
        iterations,
    )? {
        l.launch(&launch)?;
    }
    Ok(())
}

/// The gradient buffer has w's length and the matrices do not overlap.
pub(crate) fn check_grad(batch: &DenseBatch, grad: &VecArg, w: &VecArg) -> Result<()> {
    if grad.len != w.len {
        return Err(Error::shape(format!(
            "`grad` has {} elements, `w` {}: the gradients use w's layout",
            grad.len, w.len
        )));
    }
    if !batch.disjoint {
        return Err(Error::shape(
            "matrices overlap in `w`: their gradients would collide".to_string(),
        ));
    }
    Ok(())
}

pub(crate) fn check_out(out: &VecArg, expected: usize, what: &str) -> Result<()> {
    if out.len != expected {
        return Err(Error::shape(format!(
            "`out` has {} entries for {expected} {what}",
            out.len
        )));
    }
    Ok(())
}

/// A [`ConvBatch`]'s tables in device memory, its per-block and per-layer scratch and the
/// large tier's workspace (see [`conv_bounds`]), uploaded once and reused every call (one call
/// at a time: [`conv_bounds`] takes it mutably).
#[derive(Debug)]
pub struct DeviceConvBatch {
    batch: ConvBatch,
    items: CudaSlice<sk_gram_conv_item>,
    order: CudaSlice<u32>,
    layer_start: CudaSlice<u32>,
    scratch: CudaSlice<DeviceBound>,
    large: CudaSlice<sk_gram_large_item>,
    work: Option<CudaSlice<u8>>,
    grad_order: CudaSlice<u32>,
    grad_blocks: CudaSlice<u32>,
    argmax: CudaSlice<u32>,
    layer_scratch: CudaSlice<DeviceBound>,
}

impl DeviceConvBatch {
    /// Copies the batch's tables to the device and allocates the per-block scratch (24 bytes
    /// per frequency block), enqueued on `stream`.
    ///
    /// Errors: a stream of another context than `gpu`, a failed allocation or copy.
    pub fn new(gpu: &Gpu, stream: &Arc<CudaStream>, batch: &ConvBatch) -> Result<Self> {
        gpu.check_stream(stream)?;
        Ok(DeviceConvBatch {
            batch: batch.clone(),
            items: upload(stream, &batch.items, "uploading the block table")?,
            order: upload(stream, &batch.schedule.order, "uploading the order table")?,
            layer_start: upload(stream, &batch.layer_start, "uploading the layer table")?,
            scratch: stream
                .alloc_zeros::<DeviceBound>(batch.items.len().max(1))
                .map_err(|e| Error::driver("allocating the block scratch", e))?,
            large: upload(
                stream,
                &batch.large.entries,
                "uploading the large-block table",
            )?,
            work: None,
            grad_order: upload(
                stream,
                &batch.grad_schedule.order,
                "uploading the layer order",
            )?,
            grad_blocks: upload(
                stream,
                &batch.grad_blocks.order,
                "uploading the layer order",
            )?,
            argmax: stream
                .alloc_zeros::<u32>(batch.len().max(1))
                .map_err(|e| Error::driver("allocating the layer scratch", e))?,
            layer_scratch: stream
                .alloc_zeros::<DeviceBound>(batch.len().max(1))
                .map_err(|e| Error::driver("allocating the layer scratch", e))?,
        })
    }

    /// The host description.
    pub fn batch(&self) -> &ConvBatch {
        &self.batch
    }
}

/// Bounds the spectral norm of every convolution layer of `batch` (circular padding, stride 1;
/// Delattre et al. 2023): per layer, the max over its frequency blocks of their Gram-iteration
/// bounds, one [`DeviceBound`] per layer in `out` (iterations: the most any block ran; flags:
/// certified when every block is, converged when every block converged). Enqueued on `stream`
/// without a host synchronization.
///
/// Certified mode also bounds the DFT's rounding (the blocks are formed in f64 from the
/// kernel), so its upper bound is ≥ the exact operator norm of the stored kernel.
///
/// Channel blocks above the on-chip limit (128, or 64 in f64 arithmetic) take the large tier,
/// as in [`dense_bounds`] (the workspace also holds each such block, formed once per call).
///
/// Errors: as [`dense_bounds`], with `out` one entry per layer.
pub fn conv_bounds<T: Storage>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    batch: &mut DeviceConvBatch,
    w: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, DeviceBound>,
    precision: Precision,
    iterations: Iterations,
) -> Result<()> {
    conv_call(gpu, stream, batch, w, out, None, precision, iterations)
}

/// [`conv_bounds`] and, for Lipschitz regularization, the gradient of every layer's upper bound
/// with respect to its kernel, written to `grad` in `w`'s layout (each kernel at its offset;
/// entries between kernels are left as they are). A layer's bound is the max over its
/// frequency blocks A_f of ‖A_f‖_p, so its gradient is that of the maximizing block (the first
/// of equal ones: a subgradient at ties; conjugate blocks give the same gradient): with
/// G = ∂‖A_f‖_p/∂A_f formed on chip as for [`dense_bounds_and_gradients`] and
/// `ω_pq = e^{−2πi(pu+qv)/n}`, `∂bound/∂K[o,i,p,q] = Re(conj(G[o][i]) ω_pq)` — the f64 reference
/// is [`super::cpu::conv_circular_bound_gradient`]. Rounded once to the storage type. A zero
/// kernel gets the zero subgradient; NaN or infinite entries NaN gradients (that layer only).
///
/// Layers whose blocks exceed 64 (the on-chip gradient limit) rerun their maximizing block on
/// the large tier, with P in the workspace.
///
/// Errors: as [`conv_bounds`]; `grad` not the length of `w`; layers that overlap in `w`.
#[allow(clippy::too_many_arguments)]
pub fn conv_bounds_and_gradients<T: Storage>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    batch: &mut DeviceConvBatch,
    w: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, DeviceBound>,
    grad: &mut CudaViewMut<'_, T>,
    precision: Precision,
    iterations: Iterations,
) -> Result<()> {
    conv_call(
        gpu,
        stream,
        batch,
        w,
        out,
        Some(grad),
        precision,
        iterations,
    )
}

#[allow(clippy::too_many_arguments)]
fn conv_call<T: Storage>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    batch: &mut DeviceConvBatch,
    w: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, DeviceBound>,
    grad: Option<&mut CudaViewMut<'_, T>>,
    precision: Precision,
    iterations: Iterations,
) -> Result<()> {
    let l = CudaLauncher::new(gpu, stream)?;
    let (wa, _w) = vec_arg(gpu, stream, w, "w")?;
    let (oa, _out) = vec_arg_mut(gpu, stream, out, "out")?;
    check_out(&oa, batch.batch.len(), "layers")?;
    iterations.check()?;
    let kind = if grad.is_some() {
        Kind::ConvGrad
    } else {
        Kind::Conv
    };
    let (ga, _g) = match grad {
        Some(g) => {
            let (a, guard) = vec_arg_mut(gpu, stream, g, "grad")?;
            check_conv_grad(&batch.batch, &a, &wa)?;
            (a, Some(guard))
        }
        None => (VecArg { addr: 0, len: 0 }, None),
    };
    let shape = call_shape::<T>(kind, &batch.batch.large, precision);
    ensure_work(stream, &mut batch.work, shape.work_bytes)?;
    let large = batch.large.as_view();
    let (la, _l) = vec_arg(gpu, stream, &large, "large")?;
    let mut work_view = batch.work.as_mut().map(|w| w.as_view_mut());
    let (wka, _wk) = match work_view.as_mut() {
        Some(v) => {
            let (a, g) = vec_arg_mut(gpu, stream, v, "workspace")?;
            (a, Some(g))
        }
        None => (VecArg { addr: 0, len: 0 }, None),
    };
    let grad_order = if arithmetic::<T>(precision).1 == 8 {
        batch.grad_blocks.as_view()
    } else {
        batch.grad_order.as_view()
    };
    let (items, order, starts) = (
        batch.items.as_view(),
        batch.order.as_view(),
        batch.layer_start.as_view(),
    );
    let (ia, _i) = vec_arg(gpu, stream, &items, "items")?;
    let (ra, _r) = vec_arg(gpu, stream, &order, "order")?;
    let (sa, _s) = vec_arg(gpu, stream, &starts, "layer_start")?;
    let (goa, _go) = vec_arg(gpu, stream, &grad_order, "grad_order")?;
    let mut scratch = batch.scratch.as_view_mut();
    let (xa, _x) = vec_arg_mut(gpu, stream, &mut scratch, "scratch")?;
    let mut argmax = batch.argmax.as_view_mut();
    let (aa, _a) = vec_arg_mut(gpu, stream, &mut argmax, "layer_argmax")?;
    let mut layer_scratch = batch.layer_scratch.as_view_mut();
    let (lsa, _ls) = vec_arg_mut(gpu, stream, &mut layer_scratch, "layer scratch")?;
    let with_grad = kind == Kind::ConvGrad;
    let tables = Tables {
        items: ia.addr,
        order: ra.addr,
        item_out: xa.addr,
        layer_start: sa.addr,
        layer_out: oa.addr,
        grad: ga.addr,
        large: la.addr,
        work: wka,
        layer_argmax: if with_grad { aa.addr } else { 0 },
        grad_order: goa.addr,
        grad_out: lsa.addr,
    };
    let b = &batch.batch;
    let mut launches = plan::<T>(
        &l,
        kind,
        &b.schedule,
        &b.large,
        b.span(),
        b.len(),
        tables,
        &wa,
        precision,
        iterations,
    )?;
    if with_grad {
        launches.extend(plan_conv_grad::<T>(
            &l, b, tables, &wa, precision, iterations,
        )?);
    }
    for launch in &launches {
        l.launch(launch)?;
    }
    Ok(())
}

/// Convolution gradients: `grad` has w's length and the layers do not overlap.
pub(crate) fn check_conv_grad(batch: &ConvBatch, grad: &VecArg, w: &VecArg) -> Result<()> {
    if grad.len != w.len {
        return Err(Error::shape(format!(
            "`grad` has {} elements, `w` {}: the gradients use w's layout",
            grad.len, w.len
        )));
    }
    if !batch.disjoint() {
        return Err(Error::shape(
            "kernels overlap in `w`: their gradients would collide".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::Recorder;

    fn dense_plan(
        kind: Kind,
        shapes: &[(usize, usize)],
    ) -> (DenseBatch, Vec<Launch<sk_gram_params>>) {
        let batch = DenseBatch::packed(shapes).unwrap();
        let w = VecArg {
            addr: 0x1000,
            len: batch.span(),
        };
        let tables = Tables {
            order: 0x2000,
            grad: 0x3000,
            large: 0x4000,
            work: VecArg {
                addr: 0x10_0000,
                len: 1 << 40,
            },
            ..Tables::none()
        };
        let launches = plan::<f32>(
            &Recorder::default(),
            kind,
            &batch.schedule,
            &batch.large,
            batch.span(),
            0,
            tables,
            &w,
            Precision::Fast,
            Iterations::Fixed(6),
        )
        .unwrap();
        (batch, launches)
    }

    /// Dense bounds: the items of side <= 16 lead the order table and get the small-side kernel,
    /// the block items of side <= 64 the mid-side kernel; the kernel of both tiers serves the
    /// rest, each kernel finding its items through `order`, `warp_matrices` and `block_first`.
    #[test]
    fn small_and_mid_sides_get_their_own_kernels() {
        // Sides 3, 20, 16, 64, 1, 17, 80: three small, two more for warps, one mid, one block.
        let shapes = [
            (3, 9),
            (20, 20),
            (40, 16),
            (64, 64),
            (1, 1),
            (17, 30),
            (100, 80),
        ];
        let (batch, launches) = dense_plan(Kind::Dense, &shapes);
        let order = &batch.schedule.order;
        let side = |i: u32| shapes[i as usize].0.min(shapes[i as usize].1);
        assert_eq!(
            (batch.schedule.small_items, batch.schedule.warp_items),
            (3, 5)
        );
        assert!(order[..3].iter().all(|&i| side(i) <= 16));
        assert!(order[3..5].iter().all(|&i| (17..=32).contains(&side(i))));
        assert_eq!((side(order[5]), side(order[6])), (64, 80));

        // Which items a launch's teams take, as the kernel finds them (params.h).
        let items = |launch: &Launch<sk_gram_params>| -> Vec<usize> {
            let p = &launch.params;
            let base = (p.order as usize - 0x2000) / 4;
            let warps = (0..p.warp_matrices).map(|w| base + w as usize);
            let blocks = (0..launch.grid - p.warp_blocks)
                .map(|j| base + (p.warp_matrices + p.block_first + j) as usize);
            warps.chain(blocks).map(|slot| side(order[slot])).collect()
        };
        let kernels: Vec<&str> = launches.iter().map(|l| l.kernel.as_str()).collect();
        assert_eq!(
            kernels,
            [
                "sk_gram_dense_small_f32_f32",
                "sk_gram_dense_mid_f32_f32",
                "sk_gram_dense_f32_f32"
            ]
        );
        let mut sides: Vec<Vec<usize>> = launches.iter().map(items).collect();
        sides[0].sort_unstable();
        sides[2][..2].sort_unstable();
        assert_eq!(sides, [vec![1, 3, 16], vec![64], vec![17, 20, 80]]);
        for l in &launches {
            // Every slot a team reads is inside the table.
            assert!(
                l.params.count as usize + (l.params.order as usize - 0x2000) / 4 == order.len()
            );
        }
        assert_eq!(launches[0].grid, 1);
        assert_eq!(
            launches[0].shared_mem_bytes,
            8 * 16 * (16 + SK_GRAM_SMALL_PAD) * 4
        );
        assert_eq!((launches[1].grid, launches[1].params.warp_blocks), (1, 0));
        assert_eq!((launches[2].grid, launches[2].params.warp_blocks), (2, 1));
    }

    /// The large tier: the products that read the workspace (GRAM t >= 2, PGRAM; for
    /// convolutions every GRAM) take the products kernel, every other phase (SCAN, dense GRAM
    /// t = 1 read through the source, STATS, FINISH, GRADX) the phase kernel.
    #[test]
    fn large_products_run_in_their_own_kernels() {
        // One large matrix (side 200 > 128), T = 6.
        for kind in [Kind::Dense, Kind::DenseGrad] {
            let (_, launches) = dense_plan(kind, &[(200, 210)]);
            let mut steps = Vec::new();
            for l in &launches {
                let (step, t) = (l.params.step, l.params.t);
                let product = if l.kernel == "sk_gram_large_dense_product_f32_f32" {
                    true
                } else {
                    assert_eq!(
                        l.kernel, "sk_gram_large_dense_f32_f32",
                        "{kind:?} step {step}"
                    );
                    false
                };
                let expected =
                    step == SK_GRAM_LARGE_PGRAM || (step == SK_GRAM_LARGE_GRAM && t >= 2);
                assert_eq!(product, expected, "{kind:?} step {step} t {t}");
                steps.push((step, t));
            }
            let grams: Vec<u32> = steps
                .iter()
                .filter(|s| s.0 == SK_GRAM_LARGE_GRAM)
                .map(|s| s.1)
                .collect();
            assert_eq!(grams, [1, 2, 3, 4, 5, 6]);
            let pgrams = steps.iter().filter(|s| s.0 == SK_GRAM_LARGE_PGRAM).count();
            assert_eq!(pgrams, if kind == Kind::DenseGrad { 5 } else { 0 });
        }
        // Convolutions form X in the workspace first: every GRAM step is a direct product.
        assert!(large_direct(SK_GRAM_LARGE_GRAM, 1, true));
        assert!(!large_direct(SK_GRAM_LARGE_GRAM, 1, false));
        for step in [
            SK_GRAM_LARGE_SCAN,
            SK_GRAM_LARGE_FORM,
            SK_GRAM_LARGE_STATS,
            SK_GRAM_LARGE_FINISH,
            SK_GRAM_LARGE_GRADX,
        ] {
            assert!(!large_direct(step, 3, true) && !large_direct(step, 3, false));
        }
    }

    /// Only small sides: one launch; no small or mid sides, or gradients: the kernel of both
    /// tiers serves every on-chip item from the start of the table.
    #[test]
    fn one_launch_when_the_batch_has_one_kind_of_side() {
        let (_, launches) = dense_plan(Kind::Dense, &[(4, 4), (16, 50)]);
        assert_eq!(launches.len(), 1);
        assert_eq!(launches[0].kernel, "sk_gram_dense_small_f32_f32");
        assert_eq!(launches[0].params.count, 2);
        let dense: &[(usize, usize)] = &[(20, 20), (100, 100)];
        let grad: &[(usize, usize)] = &[(4, 4), (20, 20), (64, 64), (100, 100)];
        let cases = [
            (Kind::Dense, "sk_gram_dense_f32_f32", dense),
            (Kind::DenseGrad, "sk_gram_dense_grad_f32_f32", grad),
        ];
        for (kind, name, shapes) in cases {
            let (_, launches) = dense_plan(kind, shapes);
            assert_eq!(launches.len(), 1);
            assert_eq!(launches[0].kernel, name);
            let p = &launches[0].params;
            assert_eq!((p.order as usize, p.block_first), (0x2000, 0));
            assert_eq!(p.count as usize, shapes.len());
        }
    }
}
