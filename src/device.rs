//! The runtime: a [`Gpu`] handle owning a CUDA context, a stream of its own, and the embedded
//! kernel module loaded once per context with every function looked up once.
//!
//! Opening a handle never panics. cudarc panics in `CudaContext::new` and friends when the
//! driver library is absent, so [`Gpu::open`] checks for the library first and turns every
//! failure into a distinct [`Error`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use cudarc::nvrtc::Ptx;

use crate::build_info;
use crate::error::{Error, Result, code_name};

/// The fatbin build.rs produced (empty when the kernels were not built).
static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/spherekit.fatbin"));

/// What a device is, read once when a [`Gpu`] opens.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Device ordinal.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Number of streaming multiprocessors.
    pub sm_count: u32,
    /// Device memory in bytes.
    pub total_memory: usize,
    /// L2 cache in bytes.
    pub l2_bytes: usize,
    /// Shared memory one block may use after opting in, in bytes.
    pub shared_per_block_optin: usize,
}

struct GpuInner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<String, CudaFunction>,
    info: DeviceInfo,
    stream_smem_budget: u32,
    gram_smem_budget: u32,
    // Keeps the module loaded for as long as any handle lives.
    _module: Arc<CudaModule>,
}

/// A CUDA device with the spherekit kernels loaded. Cheap to clone (an `Arc`) and safe to share
/// across threads; every launch names the stream it goes to.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<GpuInner>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("info", &self.inner.info)
            .finish()
    }
}

/// Handles already opened, keyed by the raw context, so the module is loaded once per context.
fn registry() -> &'static Mutex<Vec<(usize, Gpu)>> {
    static OPENED: OnceLock<Mutex<Vec<(usize, Gpu)>>> = OnceLock::new();
    OPENED.get_or_init(|| Mutex::new(Vec::new()))
}

/// Whether the CUDA driver library can be loaded. Never panics.
pub fn driver_present() -> bool {
    // SAFETY: is_culib_present only tries to dlopen the candidate library names and drops what
    // it opened; it reads no CUDA state and runs no CUDA call.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Number of CUDA devices, or why none can be used. Never panics.
pub fn device_count() -> Result<usize> {
    if !driver_present() {
        return Err(Error::NoDriver);
    }
    match CudaContext::device_count() {
        Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
        Err(DriverError(CUresult::CUDA_ERROR_NO_DEVICE)) => Ok(0),
        Err(e) => Err(Error::driver("counting devices", e)),
    }
}

impl Gpu {
    /// Opens device `ordinal` (its primary context) and loads the kernels, once per process:
    /// later calls return the same handle.
    ///
    /// Errors, in the order they are checked: [`Error::NoDriver`], [`Error::NoDevice`],
    /// [`Error::KernelsNotBuilt`], [`Error::UnsupportedArch`], [`Error::Driver`].
    pub fn open(ordinal: usize) -> Result<Gpu> {
        let available = device_count()?;
        if ordinal >= available {
            return Err(Error::NoDevice {
                requested: ordinal,
                available,
            });
        }
        if !build_info::KERNELS_BUILT {
            return Err(Error::KernelsNotBuilt {
                reason: build_info::KERNELS_STATUS.to_string(),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| Error::driver("creating a context", e))?;
        Gpu::with_context(ctx)
    }

    /// Loads the kernels into a context the caller owns (a training stack's own context).
    /// Returns the existing handle when this context was opened before.
    pub fn with_context(ctx: Arc<CudaContext>) -> Result<Gpu> {
        if !build_info::KERNELS_BUILT {
            return Err(Error::KernelsNotBuilt {
                reason: build_info::KERNELS_STATUS.to_string(),
            });
        }
        let key = ctx.cu_ctx() as usize;
        let mut opened = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, gpu)) = opened.iter().find(|(k, _)| *k == key) {
            return Ok(gpu.clone());
        }
        let gpu = Gpu::load(ctx)?;
        opened.push((key, gpu.clone()));
        Ok(gpu)
    }

    fn load(ctx: Arc<CudaContext>) -> Result<Gpu> {
        let info = read_info(&ctx)?;
        let module = ctx
            .load_module(Ptx::from_binary(FATBIN.to_vec()))
            .map_err(|e| match e.0 {
                CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU
                | CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
                | CUresult::CUDA_ERROR_INVALID_PTX
                | CUresult::CUDA_ERROR_INVALID_IMAGE => Error::UnsupportedArch {
                    compute_capability: info.compute_capability,
                    built_for: build_info::CUDA_ARCHS.to_string(),
                    code: code_name(e.0),
                },
                _ => Error::driver("loading the kernel module", e),
            })?;
        let mut functions = HashMap::new();
        for name in crate::kernel_names() {
            let f = module
                .load_function(&name)
                .map_err(|e| Error::driver("looking up a kernel in the module", e))?;
            functions.insert(name, f);
        }
        // The tensor-core feature map keeps W in dynamic shared memory and has no static
        // shared memory, so it joins the streaming kernels' budget without lowering it.
        let stream_smem_budget = opt_in_dynamic_smem(&functions, &info, |name| {
            name.ends_with("stream") || name.starts_with("sk_rf_features_tc_")
        })?;
        let gram_smem_budget = opt_in_dynamic_smem(&functions, &info, |name| {
            name.starts_with("sk_gram_") && !name.starts_with("sk_gram_large_")
        })?;
        let stream = ctx.default_stream();
        Ok(Gpu {
            inner: Arc::new(GpuInner {
                ctx,
                stream,
                functions,
                info,
                stream_smem_budget,
                gram_smem_budget,
                _module: module,
            }),
        })
    }

    /// The CUDA context the kernels live in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.inner.ctx
    }

    /// The context's default stream, for callers that do not manage streams.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// What the device is.
    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// A loaded kernel by name.
    pub(crate) fn function(&self, name: &str) -> Result<&CudaFunction> {
        self.inner.functions.get(name).ok_or_else(|| Error::Driver {
            during: "looking up a kernel",
            code: format!("kernel {name} is not in the module"),
        })
    }

    /// Dynamic shared memory each streaming row kernel may use per block, in bytes.
    pub(crate) fn stream_smem_budget(&self) -> u32 {
        self.inner.stream_smem_budget
    }

    /// Dynamic shared memory each Gram-iteration kernel may use per block, in bytes.
    pub(crate) fn gram_smem_budget(&self) -> u32 {
        self.inner.gram_smem_budget
    }

    /// Checks that `stream` belongs to this handle's context.
    pub(crate) fn check_stream(&self, stream: &CudaStream) -> Result<()> {
        if stream.context().cu_ctx() == self.inner.ctx.cu_ctx() {
            Ok(())
        } else {
            Err(Error::ContextMismatch { buffer: "stream" })
        }
    }
}

/// Raises the dynamic shared memory limit of the kernels `select` picks (the streaming row
/// kernels, the Gram kernels) to what the device allows beside their static shared memory, and
/// returns the smallest such budget: the bytes every one of them may be launched with.
fn opt_in_dynamic_smem(
    functions: &HashMap<String, CudaFunction>,
    info: &DeviceInfo,
    select: impl Fn(&str) -> bool,
) -> Result<u32> {
    use cudarc::driver::sys::CUfunction_attribute as Attr;
    let mut budget = u32::MAX;
    for (name, f) in functions.iter().filter(|(n, _)| select(n)) {
        let static_smem = f
            .get_attribute(Attr::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
            .map_err(|e| Error::driver("reading a kernel's shared memory size", e))?;
        let available = info
            .shared_per_block_optin
            .saturating_sub(usize::try_from(static_smem).unwrap_or(0));
        let available = i32::try_from(available).unwrap_or(i32::MAX);
        f.set_attribute(
            Attr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            available,
        )
        .map_err(|e| Error::Driver {
            during: "raising a kernel's shared memory limit",
            code: format!("{} for {name}", code_name(e.0)),
        })?;
        budget = budget.min(available as u32);
    }
    Ok(if budget == u32::MAX { 0 } else { budget })
}

fn read_info(ctx: &Arc<CudaContext>) -> Result<DeviceInfo> {
    let attr = |a: CUdevice_attribute| {
        ctx.attribute(a)
            .map_err(|e| Error::driver("reading a device attribute", e))
    };
    let name = ctx
        .name()
        .map_err(|e| Error::driver("reading the device name", e))?;
    let compute_capability = ctx
        .compute_capability()
        .map_err(|e| Error::driver("reading the compute capability", e))?;
    let sm_count = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let l2 = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?;
    let total_memory = ctx
        .total_mem()
        .map_err(|e| Error::driver("reading the memory size", e))?;
    let smem_optin =
        attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
    Ok(DeviceInfo {
        ordinal: ctx.ordinal(),
        name,
        compute_capability,
        sm_count: u32::try_from(sm_count).unwrap_or(1).max(1),
        total_memory,
        l2_bytes: usize::try_from(l2).unwrap_or(0),
        shared_per_block_optin: usize::try_from(smem_optin).unwrap_or(0),
    })
}
