//! The only place that launches kernels. A family describes a launch (kernel name, grid,
//! block, parameter struct) after validating its arguments; a [`Launcher`] sends it to a CUDA
//! stream or, with the `emulator` feature, to the CPU emulator.
//!
//! This module also holds the argument plumbing every family shares: matrices of rows with a
//! stride ([`Rows`], [`RowsMut`]), their validation, and the workspace for column partials.

use cudarc::driver::{
    CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr, DeviceSlice,
    LaunchConfig, PushKernelArg, SyncOnDrop,
};

use crate::device::Gpu;
use crate::error::{Error, Result};

/// One kernel launch: a 1-D grid of 1-D blocks, parameters passed by value.
#[derive(Debug, Clone)]
pub(crate) struct Launch<P> {
    pub kernel: String,
    pub grid: u32,
    pub block: u32,
    /// Dynamic shared memory per block, in bytes.
    pub shared_mem_bytes: u32,
    pub params: P,
}

/// Plain-data parameter structs from params.h.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs generated from kernels/params.h (so their layout
/// is the one the kernels read), holding only integers, floats and raw pointers.
pub(crate) unsafe trait KernelParams: DeviceRepr + Copy + std::fmt::Debug {}

/// Where launches go.
pub(crate) trait Launcher {
    /// Streaming multiprocessors of the target, for persistent grids.
    fn sm_count(&self) -> u32;
    /// Dynamic shared memory a block of the streaming row kernels may use, in bytes.
    fn stream_smem_budget(&self) -> u32;
    /// Dynamic shared memory a block of the Gram-iteration kernels may use, in bytes.
    fn gram_smem_budget(&self) -> u32;
    /// Enqueues one launch. The parameters' pointers must have been validated by the caller.
    fn launch<P: KernelParams>(&self, launch: &Launch<P>) -> Result<()>;
}

/// Largest 1-D grid a launch may use.
pub(crate) const MAX_GRID: u64 = (1 << 31) - 1;

/// Launches on a CUDA stream of a [`Gpu`].
pub(crate) struct CudaLauncher<'a> {
    gpu: &'a Gpu,
    stream: &'a CudaStream,
}

impl<'a> CudaLauncher<'a> {
    pub(crate) fn new(gpu: &'a Gpu, stream: &'a CudaStream) -> Result<Self> {
        gpu.check_stream(stream)?;
        Ok(CudaLauncher { gpu, stream })
    }
}

impl Launcher for CudaLauncher<'_> {
    fn sm_count(&self) -> u32 {
        self.gpu.info().sm_count
    }

    fn stream_smem_budget(&self) -> u32 {
        self.gpu.stream_smem_budget()
    }

    fn gram_smem_budget(&self) -> u32 {
        self.gpu.gram_smem_budget()
    }

    fn launch<P: KernelParams>(&self, launch: &Launch<P>) -> Result<()> {
        debug_assert!(u64::from(launch.grid) <= MAX_GRID && launch.grid > 0);
        let func = self.gpu.function(&launch.kernel)?;
        let cfg = LaunchConfig {
            grid_dim: (launch.grid, 1, 1),
            block_dim: (launch.block, 1, 1),
            shared_mem_bytes: launch.shared_mem_bytes,
        };
        let mut builder = self.stream.launch_builder(func);
        builder.arg(&launch.params);
        // SAFETY: the kernel named here takes exactly one argument, a `P` by value: the family
        // picks the name and the parameter type together, and P's layout is the one the kernel
        // was compiled with (both come from kernels/params.h; tests/params_layout.rs fails when
        // the Rust copy drifts). Every pointer in `params` was taken from a buffer whose length
        // the family checked against the shape and strides it also wrote into `params`, and the
        // callers hold those buffers' SyncOnDrop guards until this call returns, so cudarc
        // orders the launch after earlier writes and keeps the memory alive until it finishes.
        unsafe { builder.launch(cfg) }.map_err(|e| Error::driver("launching a kernel", e))?;
        Ok(())
    }
}

// ---- arguments ------------------------------------------------------------------------------

/// A validated row-major matrix argument, reduced to what a launch needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatArg {
    pub addr: u64,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl MatArg {
    /// Whether 16-byte accesses are aligned for every row of this matrix.
    pub(crate) fn vector_ok(&self, vec: usize, elem_size: usize) -> bool {
        self.addr.is_multiple_of(16) && self.stride.is_multiple_of(vec) && (vec * elem_size) == 16
    }
}

/// A validated vector argument.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VecArg {
    pub addr: u64,
    pub len: usize,
}

/// Elements a matrix of `rows` x `cols` with row `stride` spans: (rows - 1) * stride + cols.
pub(crate) fn span(buffer: &'static str, rows: usize, cols: usize, stride: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Err(Error::shape(format!(
            "`{buffer}` has a zero dimension ({rows} x {cols})"
        )));
    }
    if stride < cols {
        return Err(Error::InvalidStride {
            buffer,
            stride,
            cols,
        });
    }
    (rows - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(cols))
        .ok_or_else(|| Error::TooLarge(format!("`{buffer}`: {rows} rows of stride {stride}")))
}

fn check_matrix(
    buffer: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    stride: usize,
) -> Result<()> {
    let needed = span(buffer, rows, cols, stride)?;
    if len < needed {
        return Err(Error::BufferTooSmall {
            buffer,
            needed,
            len,
        });
    }
    Ok(())
}

/// A read-only matrix in device memory: `rows` rows of `cols` elements, row i starting at
/// element `i * stride` of the view. Validated when built: no zero dimension, `stride >= cols`,
/// and the view long enough for the last row.
#[derive(Debug)]
pub struct Rows<'a, T> {
    view: CudaView<'a, T>,
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T> Rows<'a, T> {
    /// Contiguous rows (`stride == cols`).
    pub fn new(view: CudaView<'a, T>, rows: usize, cols: usize) -> Result<Self> {
        Self::with_stride(view, rows, cols, cols)
    }

    /// Rows `stride` elements apart.
    pub fn with_stride(
        view: CudaView<'a, T>,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<Self> {
        check_matrix("rows", view.len(), rows, cols, stride)?;
        Ok(Rows {
            view,
            rows,
            cols,
            stride,
        })
    }

    /// Contiguous rows over a whole device buffer.
    pub fn from_slice(slice: &'a CudaSlice<T>, rows: usize, cols: usize) -> Result<Self> {
        Self::new(slice.as_view(), rows, cols)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Row length.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Elements between the starts of consecutive rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The device address for a launch on `stream`, and the guard that records the read.
    pub(crate) fn arg<'s>(
        &'s self,
        gpu: &Gpu,
        stream: &'s CudaStream,
        name: &'static str,
    ) -> Result<(MatArg, SyncOnDrop<'s>)> {
        same_context(gpu, self.view.stream(), name)?;
        let (addr, guard) = self.view.device_ptr(stream);
        Ok((
            MatArg {
                addr,
                rows: self.rows,
                cols: self.cols,
                stride: self.stride,
            },
            guard,
        ))
    }
}

/// A writable matrix in device memory; see [`Rows`].
#[derive(Debug)]
pub struct RowsMut<'a, T> {
    view: CudaViewMut<'a, T>,
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T> RowsMut<'a, T> {
    /// Contiguous rows (`stride == cols`).
    pub fn new(view: CudaViewMut<'a, T>, rows: usize, cols: usize) -> Result<Self> {
        Self::with_stride(view, rows, cols, cols)
    }

    /// Rows `stride` elements apart.
    pub fn with_stride(
        view: CudaViewMut<'a, T>,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<Self> {
        check_matrix("rows", view.len(), rows, cols, stride)?;
        Ok(RowsMut {
            view,
            rows,
            cols,
            stride,
        })
    }

    /// Contiguous rows over a whole device buffer.
    pub fn from_slice(slice: &'a mut CudaSlice<T>, rows: usize, cols: usize) -> Result<Self> {
        Self::new(slice.as_view_mut(), rows, cols)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Row length.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Elements between the starts of consecutive rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The device address for a launch on `stream`, and the guard that records the write.
    pub(crate) fn arg_mut<'s>(
        &'s mut self,
        gpu: &Gpu,
        stream: &'s CudaStream,
        name: &'static str,
    ) -> Result<(MatArg, SyncOnDrop<'s>)> {
        same_context(gpu, self.view.stream(), name)?;
        let (rows, cols, stride) = (self.rows, self.cols, self.stride);
        let (addr, guard) = self.view.device_ptr_mut(stream);
        Ok((
            MatArg {
                addr,
                rows,
                cols,
                stride,
            },
            guard,
        ))
    }
}

fn same_context(gpu: &Gpu, owner: &CudaStream, name: &'static str) -> Result<()> {
    if owner.context().cu_ctx() == gpu.context().cu_ctx() {
        Ok(())
    } else {
        Err(Error::ContextMismatch { buffer: name })
    }
}

/// A vector argument read by a kernel, with its guard.
pub(crate) fn vec_arg<'s, T>(
    gpu: &Gpu,
    stream: &'s CudaStream,
    view: &'s CudaView<'_, T>,
    name: &'static str,
) -> Result<(VecArg, SyncOnDrop<'s>)> {
    same_context(gpu, view.stream(), name)?;
    let (addr, guard) = view.device_ptr(stream);
    Ok((
        VecArg {
            addr,
            len: view.len(),
        },
        guard,
    ))
}

/// A whole device buffer read by a kernel, with its guard.
pub(crate) fn slice_arg<'s, T>(
    gpu: &Gpu,
    stream: &'s CudaStream,
    slice: &'s CudaSlice<T>,
    name: &'static str,
) -> Result<(VecArg, SyncOnDrop<'s>)> {
    same_context(gpu, slice.stream(), name)?;
    let (addr, guard) = slice.device_ptr(stream);
    Ok((
        VecArg {
            addr,
            len: slice.len(),
        },
        guard,
    ))
}

/// A vector argument written by a kernel, with its guard.
pub(crate) fn vec_arg_mut<'s, T>(
    gpu: &Gpu,
    stream: &'s CudaStream,
    view: &'s mut CudaViewMut<'_, T>,
    name: &'static str,
) -> Result<(VecArg, SyncOnDrop<'s>)> {
    same_context(gpu, view.stream(), name)?;
    let len = view.len();
    let (addr, guard) = view.device_ptr_mut(stream);
    Ok((VecArg { addr, len }, guard))
}

/// Checks that the matrices named in `args` all have the shape of the first one.
pub(crate) fn same_shape(args: &[(&'static str, &MatArg)]) -> Result<()> {
    let (first_name, first) = args[0];
    for (name, m) in &args[1..] {
        if (m.rows, m.cols) != (first.rows, first.cols) {
            return Err(Error::shape(format!(
                "`{name}` is {} x {} but `{first_name}` is {} x {}",
                m.rows, m.cols, first.rows, first.cols
            )));
        }
    }
    Ok(())
}

/// Checks a vector argument's length.
pub(crate) fn check_len(name: &'static str, v: &VecArg, expected: usize) -> Result<()> {
    if v.len != expected {
        return Err(Error::shape(format!(
            "`{name}` has {} elements, expected {expected}",
            v.len
        )));
    }
    Ok(())
}

/// Device scratch memory of the calls that need it: the deterministic column sums of the
/// hypersphere backward passes (dscale, dp, and the row coefficients of their column passes) and
/// FAVOR+'s features, states and gradient stages. Owned by the caller, grown on demand on the
/// stream it is used with, reused across calls; nothing in it outlives a call, except the
/// forward stages `Favor::forward_saved` leaves for `Favor::backward_saved` (which checks that
/// no other call used the workspace between). One workspace must not be used by two streams
/// at once.
#[derive(Debug)]
pub struct Workspace {
    buf: Option<CudaSlice<f64>>,
    /// Which workspace this is (unique in the process) and how many calls have used it: a
    /// call that leaves something for a later one (FAVOR+'s saved forward) records both, and
    /// the later call checks that no other call came between.
    id: u64,
    uses: u64,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// An empty workspace; it allocates on first use.
    pub fn new() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Workspace {
            buf: None,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            uses: 0,
        }
    }

    /// (which workspace, how many calls have used it so far).
    pub(crate) fn use_mark(&self) -> (u64, u64) {
        (self.id, self.uses)
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len() * 8)
    }

    /// Whether the buffer holds `len` f64 on `gpu`'s context (so `get` would keep it).
    pub(crate) fn holds(&self, gpu: &Gpu, len: usize) -> bool {
        self.buf
            .as_ref()
            .is_some_and(|b| b.len() >= len && b.context().cu_ctx() == gpu.context().cu_ctx())
    }

    /// A buffer of at least `len` f64 on `stream`'s context, growing if needed.
    pub(crate) fn get(
        &mut self,
        gpu: &Gpu,
        stream: &std::sync::Arc<CudaStream>,
        len: usize,
    ) -> Result<&mut CudaSlice<f64>> {
        self.uses += 1;
        if !self.holds(gpu, len) {
            // Stream-ordered allocation: no host synchronization.
            // SAFETY: every element the kernels read from the workspace is written first by
            // a kernel of the same call, earlier on the stream: each worker writes its whole
            // partial row, a row pass the coefficients of every segment its column pass reads,
            // a column pass every chunk's partial row, FAVOR+ each stage's whole region. A
            // FAVOR+ backward_saved reads the forward regions of the forward_saved call its
            // FavorSaved names, in this same buffer: it refuses one that grew (reallocated)
            // or that another call used since.
            let buf = unsafe { stream.alloc::<f64>(len.max(1)) }
                .map_err(|e| Error::driver("allocating workspace", e))?;
            self.buf = Some(buf);
        }
        Ok(self.buf.as_mut().expect("allocated above"))
    }
}

// The parameter structs of kernels/params.h (src/params.rs, generated by bindgen).
macro_rules! kernel_params {
    ($($t:ty),*) => {$(
        // SAFETY: a #[repr(C)] struct generated by bindgen from kernels/params.h, holding only
        // integers, floats and raw pointers; the kernels take it by value with the same layout
        // (tests/params_layout.rs checks the generated file against the header).
        unsafe impl DeviceRepr for $t {}
        // SAFETY: as above.
        unsafe impl KernelParams for $t {}
    )*};
}
kernel_params!(
    crate::params::sk_normalize_params,
    crate::params::sk_lerp_params,
    crate::params::sk_colsum_params,
    crate::params::sk_project_params,
    crate::params::sk_bessel_params,
    crate::params::sk_gram_params,
    crate::params::sk_rf_features_params,
    crate::params::sk_favor_params,
    crate::params::sk_rf_backward_params,
    crate::params::sk_favor_backward_params,
    crate::params::sk_rf_estimate_params
);

/// A launcher for host-only tests of planning: the limits of an H100/H200, and each launch's
/// kernel, grid and parameters recorded (their Debug form: pointers print as addresses).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Recorder(pub std::cell::RefCell<Vec<(String, u32, String)>>);

#[cfg(test)]
impl Launcher for Recorder {
    fn sm_count(&self) -> u32 {
        132
    }
    fn stream_smem_budget(&self) -> u32 {
        227 * 1024
    }
    fn gram_smem_budget(&self) -> u32 {
        227 * 1024
    }
    fn launch<P: KernelParams>(&self, l: &Launch<P>) -> Result<()> {
        let params = format!("{:?}", l.params);
        self.0.borrow_mut().push((l.kernel.clone(), l.grid, params));
        Ok(())
    }
}
