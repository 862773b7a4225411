//! The crate's one error type. Every fallible call returns it as a value; nothing in the crate
//! panics on bad input, a missing driver or a missing GPU.

use std::fmt;

use cudarc::driver::{DriverError, sys::CUresult};

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough detail to act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The CUDA driver library (libcuda.so) could not be loaded: no NVIDIA driver here.
    NoDriver,
    /// The driver loaded but there is no such device (`available` devices exist).
    NoDevice {
        /// Ordinal that was asked for.
        requested: usize,
        /// Number of CUDA devices the driver reports.
        available: usize,
    },
    /// The crate was built without its CUDA kernels (nvcc was missing or failed at build time).
    KernelsNotBuilt {
        /// What build.rs recorded.
        reason: String,
    },
    /// The embedded kernels hold no code this GPU (or its driver) can run.
    UnsupportedArch {
        /// The device's compute capability (major, minor).
        compute_capability: (i32, i32),
        /// The targets the kernels were built for.
        built_for: String,
        /// The driver's error code.
        code: String,
    },
    /// A CUDA driver call failed.
    Driver {
        /// What the crate was doing.
        during: &'static str,
        /// The driver's error code, e.g. `CUDA_ERROR_OUT_OF_MEMORY`.
        code: String,
    },
    /// A shape is invalid: a zero dimension, a group that does not divide the row, or
    /// arguments whose shapes disagree.
    InvalidShape(String),
    /// A buffer holds fewer elements than its shape and stride need.
    BufferTooSmall {
        /// Which argument.
        buffer: &'static str,
        /// Elements needed.
        needed: usize,
        /// Elements present.
        len: usize,
    },
    /// A row stride is smaller than the row length.
    InvalidStride {
        /// Which argument.
        buffer: &'static str,
        /// The stride given, in elements.
        stride: usize,
        /// The row length it must be at least.
        cols: usize,
    },
    /// A scalar parameter is out of its domain (a negative or non-finite eps, ...).
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A buffer or stream belongs to a different CUDA context than the [`crate::Gpu`].
    ContextMismatch {
        /// Which argument.
        buffer: &'static str,
    },
    /// A size exceeds what the kernels can index (for example more than 2^32 - 1 columns).
    TooLarge(String),
    /// The CPU emulator reported a fault in a kernel (a divergent barrier, a deadlock, ...).
    Emulator(String),
}

impl Error {
    /// Wraps a driver error without calling into the driver (cudarc's own formatting calls
    /// cuGetErrorString, which panics when no driver library is present).
    pub(crate) fn driver(during: &'static str, err: DriverError) -> Self {
        Error::Driver {
            during,
            code: code_name(err.0),
        }
    }

    pub(crate) fn shape(msg: impl Into<String>) -> Self {
        Error::InvalidShape(msg.into())
    }

    pub(crate) fn param(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}

/// The symbolic name of a driver result code, e.g. `CUDA_ERROR_NO_DEVICE`.
pub(crate) fn code_name(code: CUresult) -> String {
    format!("{code:?}")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoDriver => write!(
                f,
                "no CUDA driver: libcuda could not be loaded (install the NVIDIA driver, or use \
                 the CPU references in each family's `cpu` module)"
            ),
            Error::NoDevice {
                requested,
                available,
            } => write!(
                f,
                "no CUDA device {requested}: the driver reports {available} device(s)"
            ),
            Error::KernelsNotBuilt { reason } => write!(
                f,
                "spherekit was built without its CUDA kernels ({reason}); install the CUDA \
                 compiler (scripts/install_cuda.sh, or set NVCC / CUDA_HOME) and rebuild"
            ),
            Error::UnsupportedArch {
                compute_capability: (ma, mi),
                built_for,
                code,
            } => write!(
                f,
                "the kernels have no code for this GPU (compute capability {ma}.{mi}, {code}); \
                 they were built for {built_for}: rebuild with SPHEREKIT_CUDA_ARCHS=sm_{ma}{mi}"
            ),
            Error::Driver { during, code } => write!(f, "CUDA driver error {code} while {during}"),
            Error::InvalidShape(msg) => write!(f, "invalid shape: {msg}"),
            Error::BufferTooSmall {
                buffer,
                needed,
                len,
            } => write!(
                f,
                "buffer `{buffer}` holds {len} elements but its shape and stride need {needed}"
            ),
            Error::InvalidStride {
                buffer,
                stride,
                cols,
            } => write!(
                f,
                "buffer `{buffer}` has row stride {stride}, smaller than its row length {cols}"
            ),
            Error::InvalidParameter { name, reason } => {
                write!(f, "invalid parameter `{name}`: {reason}")
            }
            Error::ContextMismatch { buffer } => write!(
                f,
                "`{buffer}` belongs to a different CUDA context than the Gpu handle"
            ),
            Error::TooLarge(msg) => write!(f, "too large: {msg}"),
            Error::Emulator(msg) => write!(f, "emulated kernel failed: {msg}"),
        }
    }
}

impl std::error::Error for Error {}
