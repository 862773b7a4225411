//! The CPU emulator of the kernels (feature `emulator`): the same .cu sources, compiled by the
//! host C++ compiler against kernels/emu/cuda_emu.h, run with CUDA's block, warp and barrier
//! semantics (every CUDA thread a fiber; see kernels/emu/README.md).
//!
//! It checks kernel logic where no GPU is present: indexing, masking, tier and grid choices,
//! reductions and barrier discipline (a divergent barrier or a warp collective with a wrong mask
//! is an error here, not a hang). It does not check GPU timing, and the approximate hardware
//! instructions (`rsqrtf`, `__fdividef`) are exact on the host, so it does not reproduce the
//! GPU's last-bit rounding. It is a test tool, not a substitute for running on a GPU.
//!
//! Every emulated call copies its buffers into guarded host memory: guard zones of 0xff bytes
//! around each buffer catch writes out of bounds, inputs are checked to be unchanged, and the
//! workspace starts as NaN so that a read before a write shows in the results.

use std::ffi::{CStr, CString, c_char, c_void};

use crate::error::{Error, Result};
use crate::launch::{KernelParams, Launch, Launcher, MatArg, VecArg, span};

unsafe extern "C" {
    fn sk_emu_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        dynamic_smem_bytes: u32,
        params: *const c_void,
        params_size: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn sk_emu_kernel_count() -> usize;
    fn sk_emu_kernel_name(i: usize) -> *const c_char;
}

/// A launcher that runs kernels on the CPU, pretending to be a GPU with `sm_count`
/// multiprocessors (which only sizes persistent grids) and an H100's shared memory.
#[derive(Debug, Clone, Copy)]
pub struct Emulator {
    sm_count: u32,
    stream_smem: u32,
}

/// An H100's opt-in shared memory per block (227 KiB) less the streaming kernels' static 1 KiB.
const H100_STREAM_SMEM: u32 = 227 * 1024 - 1024;

impl Emulator {
    /// An emulated device with `sm_count` multiprocessors (at least 1).
    pub fn new(sm_count: u32) -> Self {
        Emulator {
            sm_count: sm_count.max(1),
            stream_smem: H100_STREAM_SMEM,
        }
    }

    /// The same with `bytes` of dynamic shared memory for the streaming kernels (at most an
    /// H100's), to exercise rows only partly staged in shared memory.
    pub fn with_stream_smem(mut self, bytes: u32) -> Self {
        self.stream_smem = bytes.min(H100_STREAM_SMEM);
        self
    }

    /// The names of every kernel compiled into the emulator.
    pub fn kernel_names() -> Vec<String> {
        // SAFETY: sk_emu_kernel_count/name only read the registry filled by static
        // constructors; a name is a NUL-terminated string that lives for the whole program, and
        // NULL is returned past the end (handled).
        unsafe {
            (0..sk_emu_kernel_count())
                .filter_map(|i| {
                    let p = sk_emu_kernel_name(i);
                    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
                })
                .collect()
        }
    }
}

impl Launcher for Emulator {
    fn sm_count(&self) -> u32 {
        self.sm_count
    }

    fn stream_smem_budget(&self) -> u32 {
        self.stream_smem
    }

    fn gram_smem_budget(&self) -> u32 {
        // An H100's opt-in 227 KiB less the Gram kernels' static 11 KiB.
        227 * 1024 - 11 * 1024
    }

    fn launch<P: KernelParams>(&self, launch: &Launch<P>) -> Result<()> {
        // A GPU loads only the kernels `crate::kernel_names` lists (device.rs) and fails a
        // launch by any other name: so does the emulator, whose runtime knows every kernel.
        static LOADED: std::sync::OnceLock<std::collections::HashSet<String>> =
            std::sync::OnceLock::new();
        if !LOADED
            .get_or_init(|| crate::kernel_names().into_iter().collect())
            .contains(&launch.kernel)
        {
            return Err(Error::Emulator(format!(
                "kernel {} is not in crate::kernel_names (a GPU would not have loaded it)",
                launch.kernel
            )));
        }
        let name = CString::new(launch.kernel.as_str())
            .map_err(|_| Error::Emulator(format!("bad kernel name {:?}", launch.kernel)))?;
        let grid = [launch.grid, 1, 1];
        let block = [launch.block, 1, 1];
        let mut err = vec![0 as c_char; 4096];
        // SAFETY: the name is NUL-terminated; grid and block point to 3 u32 each; params points
        // to a live P of size_of::<P>() bytes (the runtime copies it before running); err is a
        // writable buffer of err.len() bytes. The kernel dereferences the pointers inside
        // `params`, which the emulated entry points built from guarded host buffers they keep
        // alive, sized by the same validation as the GPU path; and sk_emu_launch runs to
        // completion before returning.
        let code = unsafe {
            sk_emu_launch(
                name.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                launch.shared_mem_bytes,
                (&launch.params as *const P).cast(),
                std::mem::size_of::<P>(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if code == 0 {
            return Ok(());
        }
        // SAFETY: the runtime wrote a NUL-terminated message into err (truncated to its length;
        // the buffer was zeroed, so it is terminated either way).
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Err(Error::Emulator(format!(
            "{} (code {code}): {msg}",
            launch.kernel
        )))
    }
}

/// Read-only rows in host memory, standing in for [`crate::Rows`] under the emulator.
#[derive(Debug, Clone, Copy)]
pub struct HostRows<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T> HostRows<'a, T> {
    /// `rows` rows of `cols` elements, `stride` apart, validated as [`crate::Rows`] is.
    pub fn new(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_host("rows", data.len(), rows, cols, stride)?;
        Ok(HostRows {
            data,
            rows,
            cols,
            stride,
        })
    }
}

/// Writable rows in host memory, standing in for [`crate::RowsMut`] under the emulator.
#[derive(Debug)]
pub struct HostRowsMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T> HostRowsMut<'a, T> {
    /// `rows` rows of `cols` elements, `stride` apart, validated as [`crate::RowsMut`] is.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_host("rows", data.len(), rows, cols, stride)?;
        Ok(HostRowsMut {
            data,
            rows,
            cols,
            stride,
        })
    }
}

fn check_host(
    name: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    stride: usize,
) -> Result<()> {
    let needed = span(name, rows, cols, stride)?;
    if len < needed {
        return Err(Error::BufferTooSmall {
            buffer: name,
            needed,
            len,
        });
    }
    Ok(())
}

const GUARD: usize = 256;

/// A copy of a host buffer between two guard zones of 0xff bytes, at the same address modulo
/// 16 as the original (so that alignment-dependent kernel choices match).
pub(crate) struct Guarded<T> {
    storage: Vec<u128>,
    offset: usize,
    len: usize,
    name: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> Guarded<T> {
    pub(crate) fn new(name: &'static str, data: &[T]) -> Self {
        let misalign = (data.as_ptr() as usize) % 16;
        let bytes = std::mem::size_of_val(data);
        let total = GUARD + misalign + bytes + GUARD;
        let mut g = Guarded {
            storage: vec![u128::MAX; total.div_ceil(16)],
            offset: GUARD + misalign,
            len: data.len(),
            name,
            _t: std::marker::PhantomData,
        };
        let off = g.offset;
        g.bytes_mut()[off..off + bytes].copy_from_slice(as_bytes(data));
        g
    }

    /// A buffer of `len` elements filled with 0xff bytes (NaN for floats).
    pub(crate) fn poisoned(name: &'static str, len: usize) -> Self {
        let bytes = len * std::mem::size_of::<T>();
        Guarded {
            storage: vec![u128::MAX; (2 * GUARD + bytes).div_ceil(16)],
            offset: GUARD,
            len,
            name,
            _t: std::marker::PhantomData,
        }
    }

    fn bytes(&self) -> &[u8] {
        let n = self.storage.len() * 16;
        // SAFETY: the Vec<u128> owns n initialized bytes; u8 has no alignment or validity needs.
        unsafe { std::slice::from_raw_parts(self.storage.as_ptr().cast::<u8>(), n) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let n = self.storage.len() * 16;
        // SAFETY: as in bytes(), with exclusive access through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.storage.as_mut_ptr().cast::<u8>(), n) }
    }

    pub(crate) fn addr(&self) -> u64 {
        self.bytes()[self.offset..].as_ptr() as u64
    }

    fn data_bytes(&self) -> &[u8] {
        &self.bytes()[self.offset..self.offset + self.len * std::mem::size_of::<T>()]
    }

    /// Checks both guard zones; an error names the buffer.
    pub(crate) fn check_guards(&self) -> Result<()> {
        let end = self.offset + self.len * std::mem::size_of::<T>();
        let b = self.bytes();
        if b[..self.offset].iter().chain(&b[end..]).any(|&x| x != 0xff) {
            return Err(Error::Emulator(format!(
                "a kernel wrote outside buffer `{}`",
                self.name
            )));
        }
        Ok(())
    }

    /// Checks that an input came back unchanged.
    pub(crate) fn check_unchanged(&self, original: &[T]) -> Result<()> {
        self.check_guards()?;
        if self.data_bytes() != as_bytes(original) {
            return Err(Error::Emulator(format!(
                "a kernel modified input `{}`",
                self.name
            )));
        }
        Ok(())
    }

    /// Checks the guards and copies the contents back.
    pub(crate) fn copy_out(&self, out: &mut [T]) -> Result<()> {
        self.check_guards()?;
        let src = self.data_bytes();
        // SAFETY: `out` has self.len elements of T (the caller passes the slice the buffer was
        // made from), and src holds exactly that many bytes written as T values.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr().cast::<u8>(), src.len());
        }
        Ok(())
    }
}

fn as_bytes<T: Copy>(data: &[T]) -> &[u8] {
    // SAFETY: T is one of the crate's plain numeric types (f32, f16, bf16, f64) with no padding,
    // so every byte of the slice is initialized.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

/// Guarded copies of a call's buffers, kept alive across the launch.
pub(crate) struct Staged<'a, T: Copy> {
    inputs: Vec<(Guarded<T>, &'a [T])>,
}

impl<'a, T: Copy> Staged<'a, T> {
    pub(crate) fn new() -> Self {
        Staged { inputs: Vec::new() }
    }

    /// Stages read-only rows; returns their launch argument.
    pub(crate) fn rows(&mut self, name: &'static str, r: &HostRows<'a, T>) -> MatArg {
        let g = Guarded::new(name, r.data);
        let arg = MatArg {
            addr: g.addr(),
            rows: r.rows,
            cols: r.cols,
            stride: r.stride,
        };
        self.inputs.push((g, r.data));
        arg
    }

    /// Stages a read-only vector.
    pub(crate) fn vector(&mut self, name: &'static str, v: &'a [T]) -> VecArg {
        let g = Guarded::new(name, v);
        let arg = VecArg {
            addr: g.addr(),
            len: v.len(),
        };
        self.inputs.push((g, v));
        arg
    }

    /// Checks that no input changed and no guard was touched.
    pub(crate) fn check(&self) -> Result<()> {
        self.inputs
            .iter()
            .try_for_each(|(g, orig)| g.check_unchanged(orig))
    }
}

/// A staged output: rows or a vector written by the kernel and copied back after it.
pub(crate) struct Output<T> {
    pub(crate) buf: Guarded<T>,
}

impl<T: Copy> Output<T> {
    pub(crate) fn rows(name: &'static str, r: &HostRowsMut<'_, T>) -> (Self, MatArg) {
        let buf = Guarded::new(name, r.data);
        let arg = MatArg {
            addr: buf.addr(),
            rows: r.rows,
            cols: r.cols,
            stride: r.stride,
        };
        (Output { buf }, arg)
    }

    pub(crate) fn vector(name: &'static str, v: &[T]) -> (Self, VecArg) {
        let buf = Guarded::new(name, v);
        let arg = VecArg {
            addr: buf.addr(),
            len: v.len(),
        };
        (Output { buf }, arg)
    }

    pub(crate) fn finish_rows(self, r: &mut HostRowsMut<'_, T>) -> Result<()> {
        self.buf.copy_out(r.data)
    }

    pub(crate) fn finish_vector(self, v: &mut [T]) -> Result<()> {
        self.buf.copy_out(v)
    }
}
