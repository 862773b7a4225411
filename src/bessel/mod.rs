//! Logarithms of the modified Bessel functions, log I_v(x) and log K_v(x), to machine precision
//! over the whole (v, x) range with no overflow or underflow, their x-derivatives, the ratio
//! I_{v+1}/I_v, and the von Mises-Fisher (vMF) helpers built on them; batched on the GPU
//! ([`gpu`]) and on the CPU ([`cpu`], every core).
//!
//! # Functions
//!
//! Every [`Function`] maps a pair (order, argument) to one value; a batch gives the order per
//! element or once for the whole batch ([`Orders`]).
//!
//! | function | order | argument | value |
//! |---|---|---|---|
//! | `LogI` | v | x ≥ 0 | log I_v(x) |
//! | `LogK` | v | x ≥ 0 | log K_v(x) |
//! | `DlogI` | v ≥ 0 | x ≥ 0 | d/dx log I_v(x) = v/x + I_{v+1}/I_v |
//! | `DlogK` | v | x ≥ 0 | d/dx log K_v(x) = v/x − K_{v+1}/K_v |
//! | `RatioI` | v ≥ 0 | x ≥ 0 | I_{v+1}(x)/I_v(x), computed directly |
//! | `OneMinusRatioI` | v ≥ 0 | x ≥ 0 | 1 − I_{v+1}(x)/I_v(x), accurate where small |
//! | `VmfLogNormalizer` | d ≥ 2 | κ ≥ 0 | log C_d(κ) = (d/2−1) log κ − (d/2) log 2π − log I_{d/2−1}(κ) |
//! | `VmfMeanResultant` | d ≥ 2 | κ ≥ 0 | A_d(κ) = I_{d/2}(κ)/I_{d/2−1}(κ) |
//! | `VmfOneMinusMeanResultant` | d ≥ 2 | κ ≥ 0 | 1 − A_d(κ) |
//! | `VmfMeanResultantDerivative` | d ≥ 2 | κ ≥ 0 | A_d′(κ) |
//! | `VmfKappaMle` | d ≥ 2 | R̄ ∈ [0, 1] | κ̂ with A_d(κ̂) = R̄ |
//!
//! Limits are exact: log I_0(0) = 0, log I_v(0) = −∞ (v > 0), log K_v(0) = +∞, and so on. A
//! negative x, a NaN, or an order outside its domain gives NaN for that element only, never a
//! wrong finite number. Negative orders go through the reflection formulas: K_{−v} = K_v, and
//! I_{−v} = I_v + (2/π) sin(vπ) K_v, which is NaN where it is negative (its log is undefined).
//!
//! # Accuracy
//!
//! Measured in the metric |computed − exact| / max(1, |exact|) for logs (the relative error of a
//! log alone blows up near 0 and hides errors a likelihood feels), relative error otherwise,
//! against mpmath at ≥ 50 digits (tests/data/log_bessel/, scripts/golden/). The algorithm and
//! its error analysis are in [`cpu`]'s documentation.

mod consts;
pub mod cpu;
#[cfg(feature = "emulator")]
mod emulated;
pub mod gpu;
pub mod vmf;

use crate::error::{Error, Result};

/// What a batch evaluates; see the table in the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// log I_v(x).
    LogI,
    /// log K_v(x).
    LogK,
    /// d/dx log I_v(x).
    DlogI,
    /// d/dx log K_v(x).
    DlogK,
    /// I_{v+1}(x) / I_v(x).
    RatioI,
    /// 1 − I_{v+1}(x) / I_v(x).
    OneMinusRatioI,
    /// log C_d(κ), the log normalizer of the vMF density (order d, argument κ).
    VmfLogNormalizer,
    /// A_d(κ), the vMF mean resultant length (order d, argument κ).
    VmfMeanResultant,
    /// 1 − A_d(κ) (order d, argument κ).
    VmfOneMinusMeanResultant,
    /// dA_d/dκ (order d, argument κ).
    VmfMeanResultantDerivative,
    /// κ̂ solving A_d(κ̂) = R̄ (order d, argument R̄).
    VmfKappaMle,
}

impl Function {
    /// Every function, in a fixed order.
    pub const ALL: [Function; 11] = [
        Function::LogI,
        Function::LogK,
        Function::DlogI,
        Function::DlogK,
        Function::RatioI,
        Function::OneMinusRatioI,
        Function::VmfLogNormalizer,
        Function::VmfMeanResultant,
        Function::VmfOneMinusMeanResultant,
        Function::VmfMeanResultantDerivative,
        Function::VmfKappaMle,
    ];

    /// Short name, used in kernel names and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Function::LogI => "log_i",
            Function::LogK => "log_k",
            Function::DlogI => "dlog_i",
            Function::DlogK => "dlog_k",
            Function::RatioI => "ratio_i",
            Function::OneMinusRatioI => "one_minus_ratio_i",
            Function::VmfLogNormalizer => "vmf_log_normalizer",
            Function::VmfMeanResultant => "vmf_mean_resultant",
            Function::VmfOneMinusMeanResultant => "vmf_one_minus_mean_resultant",
            Function::VmfMeanResultantDerivative => "vmf_mean_resultant_derivative",
            Function::VmfKappaMle => "vmf_kappa_mle",
        }
    }

    /// Evaluates one element in f64 on the CPU.
    pub fn eval(self, order: f64, x: f64) -> f64 {
        match self {
            Function::LogI => cpu::log_i(order, x),
            Function::LogK => cpu::log_k(order, x),
            Function::DlogI => cpu::dlog_i(order, x),
            Function::DlogK => cpu::dlog_k(order, x),
            Function::RatioI => cpu::ratio_i(order, x),
            Function::OneMinusRatioI => cpu::one_minus_ratio_i(order, x),
            Function::VmfLogNormalizer => cpu::log_vmf_normalizer(order, x),
            Function::VmfMeanResultant => cpu::vmf_mean_resultant(order, x),
            Function::VmfOneMinusMeanResultant => cpu::vmf_one_minus_mean_resultant(order, x),
            Function::VmfMeanResultantDerivative => cpu::vmf_mean_resultant_derivative(order, x),
            Function::VmfKappaMle => cpu::vmf_kappa_mle(x, order),
        }
    }
}

/// The orders of a batch: one for every element, or one per element.
#[derive(Debug, Clone, Copy)]
pub enum Orders<'a, T> {
    /// The same order for the whole batch.
    All(T),
    /// One order per element (same length as the arguments).
    Each(&'a [T]),
}

/// A floating-point type the batch APIs take: f32 or f64. f32 batches are computed in f64 on the
/// CPU and rounded once.
pub trait Real:
    Copy
    + Send
    + Sync
    + std::fmt::Debug
    + cudarc::driver::DeviceRepr
    + cudarc::driver::ValidAsZeroBits
    + 'static
    + sealed::Sealed
{
    /// Widens exactly.
    fn to_f64(self) -> f64;
    /// Rounds to nearest.
    fn from_f64(v: f64) -> Self;
    /// The kernels' name for the type.
    const NAME: &'static str;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    const NAME: &'static str = "f32";
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    const NAME: &'static str = "f64";
}

/// Evaluates `f` element-wise on the CPU with every core: `out[i] = f(order_i, x[i])`.
///
/// Errors: `out` or per-element orders of a different length than `x`. An empty batch is a
/// no-op. Invalid elements (NaN, negative x, …) give NaN in their place only.
pub fn evaluate_cpu<T: Real>(
    f: Function,
    orders: Orders<'_, T>,
    x: &[T],
    out: &mut [T],
) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    evaluate_cpu_threads(f, orders, x, out, threads)
}

/// As [`evaluate_cpu`] on `threads` threads (0 or 1: the calling thread only), for scaling
/// measurements. Same errors.
pub fn evaluate_cpu_threads<T: Real>(
    f: Function,
    orders: Orders<'_, T>,
    x: &[T],
    out: &mut [T],
    threads: usize,
) -> Result<()> {
    check_lengths(&orders, x.len(), out.len())?;
    let n = x.len();
    let chunk = n.div_ceil(threads.max(1)).max(4096);
    // One order for the batch: log K's order-only work (Temme's Γ factors) is done once here.
    let temme = match (orders, f) {
        (Orders::All(v), Function::LogK | Function::DlogK) => {
            Some(cpu::TemmeOrder::for_order(v.to_f64()))
        }
        _ => None,
    };
    let i_order = match (orders, f) {
        (Orders::All(v), Function::LogI) => cpu::i_order_factors(v.to_f64()),
        _ => None,
    };
    let run = |start: usize, out: &mut [T]| {
        for (i, o) in out.iter_mut().enumerate() {
            let j = start + i;
            let order = match orders {
                Orders::All(v) => v,
                Orders::Each(v) => v[j],
            }
            .to_f64();
            let x = x[j].to_f64();
            *o = T::from_f64(match (&temme, f) {
                (Some(t), Function::LogK) => cpu::log_k_with(order, x, Some(t)),
                (Some(t), Function::DlogK) => cpu::dlog_k_with(order, x, Some(t)),
                (_, Function::LogI) if i_order.is_some() => cpu::log_i_with(order, x, i_order),
                _ => f.eval(order, x),
            });
        }
    };
    if threads <= 1 || n <= chunk {
        run(0, out);
        return Ok(());
    }
    std::thread::scope(|scope| {
        for (k, piece) in out.chunks_mut(chunk).enumerate() {
            let run = &run;
            scope.spawn(move || run(k * chunk, piece));
        }
    });
    Ok(())
}

pub(crate) fn check_lengths<T>(orders: &Orders<'_, T>, n: usize, out: usize) -> Result<()> {
    if out != n {
        return Err(Error::shape(format!(
            "`out` has {out} elements, the arguments {n}"
        )));
    }
    if let Orders::Each(v) = orders
        && v.len() != n
    {
        return Err(Error::shape(format!(
            "{} orders for {n} arguments",
            v.len()
        )));
    }
    Ok(())
}
