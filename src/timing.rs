//! GPU timing as the benchmarks and `spherekit report` do it: CUDA events around each run,
//! after warm-up runs, median of many (robust to the odd slow run; a mean is not).

use std::sync::Arc;

use cudarc::driver::CudaStream;
use cudarc::driver::sys::CUevent_flags;

use crate::error::{Error, Result};

/// Median time of `f` in microseconds: `warmup` untimed calls, then `runs` calls each between
/// two timing events on `stream` (what `f` enqueues on that stream is what is timed).
///
/// Errors: a driver error from recording or reading an event; `runs == 0` is an error.
pub fn median_us(
    stream: &Arc<CudaStream>,
    warmup: usize,
    runs: usize,
    mut f: impl FnMut(),
) -> Result<f64> {
    if runs == 0 {
        return Err(Error::param("runs", "must be at least 1"));
    }
    for _ in 0..warmup {
        f();
    }
    let event = || {
        stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| Error::driver("recording a timing event", e))
    };
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = event()?;
        f();
        let end = event()?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| Error::driver("reading a timing event", e))?;
        samples.push(f64::from(ms) * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}
