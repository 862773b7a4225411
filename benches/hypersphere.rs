//! Hyperspherical normalization on the GPU: throughput as a fraction of the measured
//! device-to-device copy bandwidth, for normalize and lerp_normalize, forward and backward, bf16
//! and f32, D in {64, 128, 512, 4096, 16384, 131072} over ~256 MiB of input per tensor, and the
//! SimbaV2-sized step (256 x 512) as latency per call.
//!
//! Every measurement prints a `RESULT {json}` line (the schema of
//! benches/baselines/hypersphere.py, which runs PyTorch eager and torch.compile on the same
//! shapes; scripts/gpu_summary.py puts them side by side). Timing: CUDA events around each
//! launch, after warm-up, median of many runs, on random inputs.
//!
//! `cargo bench --bench hypersphere` also runs criterion on a few shapes; with
//! SPHEREKIT_BENCH_QUICK=1 (the GPU suite) only the RESULT measurements run. With
//! SPHEREKIT_BENCH_TIERS=1 it measures each shape with every tier that holds it instead (the
//! data behind the automatic tier choice).

use std::sync::Arc;

use criterion::Criterion;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr};
use half::bf16;
use spherekit::hypersphere::gpu::{LERP_BWD_VECTOR_TIERS, VECTOR_TIERS};
use spherekit::hypersphere::{Eps, LerpNormalize, Normalize, Tier};
use spherekit::{Element, Gpu, Rows, RowsMut, Workspace};

const INPUT_BYTES: usize = 256 << 20;
const DIMS: [usize; 6] = [64, 128, 512, 4096, 16384, 131072];
const SIMBA: (usize, usize) = (256, 512);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    NormFwd,
    NormBwd,
    LerpFwd,
    LerpBwd,
}

impl Op {
    const ALL: [Op; 4] = [Op::NormFwd, Op::NormBwd, Op::LerpFwd, Op::LerpBwd];
    fn name(self) -> &'static str {
        match self {
            Op::NormFwd => "normalize_fwd",
            Op::NormBwd => "normalize_bwd",
            Op::LerpFwd => "lerp_fwd",
            Op::LerpBwd => "lerp_bwd",
        }
    }
    /// Tensors of rows x D read or written (the vectors are negligible).
    fn tensors(self) -> usize {
        match self {
            Op::NormFwd => 2,
            Op::NormBwd | Op::LerpFwd => 3,
            Op::LerpBwd => 5,
        }
    }
}

/// Device buffers for one dtype: two random input tensors and two outputs of `n` elements.
struct Buffers<T> {
    a: CudaSlice<T>,
    b: CudaSlice<T>,
    out0: CudaSlice<T>,
    out1: CudaSlice<T>,
    p: CudaSlice<T>,
    dp: CudaSlice<T>,
}

fn random_host<T: Element>(n: usize, seed: u64) -> Vec<T> {
    // xorshift uniform in [-1, 1): fast enough for hundreds of MiB, never zeros.
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            T::from_f64((s >> 11) as f64 / (1u64 << 52) as f64 - 1.0 + 1e-3)
        })
        .collect()
}

fn buffers<T: Element>(stream: &Arc<CudaStream>, n: usize, max_cols: usize) -> Buffers<T> {
    let up = |seed| {
        stream
            .clone_htod(&random_host::<T>(n, seed))
            .expect("upload")
    };
    Buffers {
        a: up(1),
        b: up(2),
        out0: stream.alloc_zeros(n).expect("alloc"),
        out1: stream.alloc_zeros(n).expect("alloc"),
        p: stream
            .clone_htod(&random_host::<T>(max_cols, 3))
            .expect("upload"),
        dp: stream.alloc_zeros(max_cols).expect("alloc"),
    }
}

/// Median of `runs` event-timed repetitions of `f`, in microseconds, after `warmup` untimed
/// ones.
fn time_us(stream: &Arc<CudaStream>, warmup: usize, runs: usize, f: impl FnMut()) -> f64 {
    spherekit::timing::median_us(stream, warmup, runs, f).expect("timing")
}

/// Device-to-device copy bandwidth (bytes read + written), 1 GiB.
fn copy_gbps(stream: &Arc<CudaStream>) -> f64 {
    let n = 1usize << 28; // f32 elements = 1 GiB
    let src: CudaSlice<f32> = stream.clone_htod(&random_host::<f32>(n, 7)).unwrap();
    let mut dst: CudaSlice<f32> = stream.alloc_zeros(n).unwrap();
    let us = time_us(stream, 3, 20, || {
        stream.memcpy_dtod(&src, &mut dst).unwrap()
    });
    let gbps = 2.0 * (n * 4) as f64 / us / 1e3;
    println!(
        "RESULT {{\"family\":\"hypersphere\",\"op\":\"copy\",\"dtype\":\"f32\",\"rows\":1,\"cols\":{n},\"impl\":\"copy_d2d\",\"median_us\":{us:.3},\"bytes\":{},\"gbps\":{gbps:.1},\"frac_copy\":1.0}}",
        2 * n * 4
    );
    gbps
}

/// One launch of `op` over `rows` x `cols` of the buffers, with the automatic tier.
fn launch<T: Element + DeviceRepr>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    op: Op,
    bufs: &mut Buffers<T>,
    ws: &mut Workspace,
    rows: usize,
    cols: usize,
) {
    launch_tier(gpu, stream, op, bufs, ws, rows, cols, Tier::Auto).expect("launch");
}

/// One launch of `op` with a given tier (an error where the tier cannot hold the rows). The
/// lerp backward computes dp, as training does (and as the PyTorch baseline does).
#[allow(clippy::too_many_arguments)]
fn launch_tier<T: Element + DeviceRepr>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    op: Op,
    bufs: &mut Buffers<T>,
    ws: &mut Workspace,
    rows: usize,
    cols: usize,
    tier: Tier,
) -> spherekit::Result<()> {
    let n = rows * cols;
    let norm = Normalize::new(Eps::Clamp(1e-12)).with_tier(tier);
    let lerp = LerpNormalize {
        eps: Eps::Clamp(1e-12),
        tier,
        ..LerpNormalize::ngpt(0.05)
    };
    let a = Rows::new(bufs.a.slice(..n), rows, cols).unwrap();
    let b = Rows::new(bufs.b.slice(..n), rows, cols).unwrap();
    let p = bufs.p.slice(..cols);
    let mut o0 = RowsMut::new(bufs.out0.slice_mut(..n), rows, cols).unwrap();
    match op {
        Op::NormFwd => norm.forward(gpu, stream, &a, None, &mut o0),
        Op::NormBwd => norm.backward(gpu, stream, &a, None, &b, &mut o0, None, ws),
        Op::LerpFwd => lerp.forward(gpu, stream, &a, &b, &p, &mut o0),
        Op::LerpBwd => {
            let mut o1 = RowsMut::new(bufs.out1.slice_mut(..n), rows, cols).unwrap();
            let mut dp = bufs.dp.slice_mut(..cols);
            // dy = a: any random tensor serves for timing.
            lerp.backward(
                gpu,
                stream,
                &a,
                &b,
                &p,
                &a,
                &mut o0,
                &mut o1,
                Some(&mut dp),
                ws,
            )
        }
    }
}

/// One normalize backward over `rows` x `cols` with a per-channel scale and its gradient
/// dscale (column sums over the rows: on the streaming tier a second, column pass).
fn launch_norm_bwd_dscale<T: Element + DeviceRepr>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    bufs: &mut Buffers<T>,
    ws: &mut Workspace,
    rows: usize,
    cols: usize,
) {
    let n = rows * cols;
    let norm = Normalize::new(Eps::Clamp(1e-12));
    let x = Rows::new(bufs.a.slice(..n), rows, cols).unwrap();
    let dy = Rows::new(bufs.b.slice(..n), rows, cols).unwrap();
    let scale = bufs.p.slice(..cols);
    let mut dx = RowsMut::new(bufs.out0.slice_mut(..n), rows, cols).unwrap();
    let mut dscale = bufs.dp.slice_mut(..cols);
    norm.backward(
        gpu,
        stream,
        &x,
        Some(&scale),
        &dy,
        &mut dx,
        Some(&mut dscale),
        ws,
    )
    .expect("launch");
}

/// With SPHEREKIT_BENCH_TIERS=1: every shape of the sweep with each tier that holds it (the
/// three smallest register tiers and the streaming tier), variant "tier=<threads|stream>", to
/// tune the automatic choice from measurements.
fn tier_sweep<T: Element + DeviceRepr>(gpu: &Gpu, stream: &Arc<CudaStream>, copy: f64) {
    let dtype = T::DTYPE.name();
    let n = INPUT_BYTES / T::DTYPE.size();
    let mut bufs = buffers::<T>(stream, n, *DIMS.last().unwrap());
    let mut ws = Workspace::new();
    for op in Op::ALL {
        let teams: &[u32] = if op == Op::LerpBwd {
            &LERP_BWD_VECTOR_TIERS
        } else {
            &VECTOR_TIERS
        };
        for cols in DIMS {
            let rows = n / cols;
            let fitting = teams.iter().map(|&t| Tier::Team(t)).filter(|&tier| {
                launch_tier(gpu, stream, op, &mut bufs, &mut ws, rows, cols, tier).is_ok()
            });
            let tiers: Vec<Tier> = fitting.take(3).chain([Tier::Stream]).collect();
            for tier in tiers {
                let us = time_us(stream, 2, 15, || {
                    launch_tier(gpu, stream, op, &mut bufs, &mut ws, rows, cols, tier)
                        .expect("launch")
                });
                let name = match tier {
                    Tier::Team(t) => t.to_string(),
                    _ => "stream".to_string(),
                };
                let bytes = op.tensors() * rows * cols * T::DTYPE.size();
                report(
                    op,
                    dtype,
                    rows,
                    cols,
                    us,
                    bytes,
                    copy,
                    &format!("tier={name}"),
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    op: Op,
    dtype: &str,
    rows: usize,
    cols: usize,
    us: f64,
    bytes: usize,
    copy: f64,
    variant: &str,
) {
    let gbps = bytes as f64 / us / 1e3;
    println!(
        "RESULT {{\"family\":\"hypersphere\",\"op\":\"{}\",\"dtype\":\"{dtype}\",\"rows\":{rows},\"cols\":{cols},\"impl\":\"spherekit\",\"variant\":\"{variant}\",\"median_us\":{us:.3},\"bytes\":{bytes},\"gbps\":{gbps:.1},\"frac_copy\":{:.3}}}",
        op.name(),
        gbps / copy
    );
}

fn sweep<T: Element + DeviceRepr>(gpu: &Gpu, stream: &Arc<CudaStream>, copy: f64) {
    let dtype = T::DTYPE.name();
    let n = INPUT_BYTES / T::DTYPE.size();
    let mut bufs = buffers::<T>(stream, n, *DIMS.last().unwrap());
    let mut ws = Workspace::new();
    for op in Op::ALL {
        for cols in DIMS {
            let rows = n / cols;
            let us = time_us(stream, 3, 25, || {
                launch(gpu, stream, op, &mut bufs, &mut ws, rows, cols)
            });
            report(
                op,
                dtype,
                rows,
                cols,
                us,
                op.tensors() * rows * cols * T::DTYPE.size(),
                copy,
                "",
            );
        }
        // SimbaV2-sized step: kernel time, and the per-call time of 200 calls back to back
        // (launch overhead included). The 256 x 512 tensors stay in L2, as in a training step.
        let (rows, cols) = SIMBA;
        let bytes = op.tensors() * rows * cols * T::DTYPE.size();
        let us = time_us(stream, 10, 200, || {
            launch(gpu, stream, op, &mut bufs, &mut ws, rows, cols)
        });
        report(op, dtype, rows, cols, us, bytes, copy, "latency");
        let calls = 200;
        let total = time_us(stream, 1, 5, || {
            for _ in 0..calls {
                launch(gpu, stream, op, &mut bufs, &mut ws, rows, cols);
            }
        });
        report(
            op,
            dtype,
            rows,
            cols,
            total / calls as f64,
            bytes,
            copy,
            "back-to-back",
        );
    }
    // normalize backward with a per-channel scale and dscale (variant "dscale"): the column sums
    // come on top of the row pass (on the streaming tier, D >= 16384, a column pass re-reads x
    // and dy); the bytes counted are the op's own, so the fraction shows what they cost.
    for cols in [512, 4096, 16384, 131072] {
        let rows = n / cols;
        let us = time_us(stream, 3, 25, || {
            launch_norm_bwd_dscale(gpu, stream, &mut bufs, &mut ws, rows, cols)
        });
        let bytes = Op::NormBwd.tensors() * rows * cols * T::DTYPE.size();
        report(Op::NormBwd, dtype, rows, cols, us, bytes, copy, "dscale");
    }
}

fn criterion_group(c: &mut Criterion, gpu: &Gpu, stream: &Arc<CudaStream>) {
    let n = INPUT_BYTES / 2;
    let mut bufs = buffers::<bf16>(stream, n, 4096);
    let mut ws = Workspace::new();
    let mut group = c.benchmark_group("hypersphere_bf16");
    for (op, cols) in [
        (Op::NormFwd, 4096),
        (Op::NormBwd, 4096),
        (Op::LerpFwd, 512),
        (Op::LerpBwd, 512),
    ] {
        let rows = n / cols;
        group.throughput(criterion::Throughput::Bytes(
            (op.tensors() * rows * cols * 2) as u64,
        ));
        group.bench_function(format!("{}_{rows}x{cols}", op.name()), |b| {
            b.iter_custom(|iters| {
                let start = stream
                    .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .unwrap();
                for _ in 0..iters {
                    launch(gpu, stream, op, &mut bufs, &mut ws, rows, cols);
                }
                let end = stream
                    .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .unwrap();
                std::time::Duration::from_secs_f64(f64::from(start.elapsed_ms(&end).unwrap()) / 1e3)
            })
        });
    }
    group.finish();
}

fn main() {
    let (gpu, stream) = match Gpu::open(0) {
        Ok(gpu) => {
            let stream = gpu.context().new_stream().expect("stream");
            (gpu, stream)
        }
        Err(e) => {
            println!("hypersphere bench: skipped: no CUDA device ({e})");
            return;
        }
    };
    let info = gpu.info();
    println!(
        "hypersphere bench on {} ({} SMs, cc {:?})",
        info.name, info.sm_count, info.compute_capability
    );
    let copy = copy_gbps(&stream);
    println!("device-to-device copy: {copy:.0} GB/s (read + write)");
    if std::env::var("SPHEREKIT_BENCH_TIERS").is_ok_and(|v| v == "1") {
        tier_sweep::<bf16>(&gpu, &stream, copy);
        tier_sweep::<f32>(&gpu, &stream, copy);
        stream.synchronize().unwrap();
        return;
    }
    sweep::<bf16>(&gpu, &stream, copy);
    sweep::<f32>(&gpu, &stream, copy);
    // Keep the device pointers' events alive until the work is done.
    stream.synchronize().unwrap();
    if std::env::var("SPHEREKIT_BENCH_QUICK").is_ok_and(|v| v == "1") {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_group(&mut c, &gpu, &stream);
    c.final_summary();
}
