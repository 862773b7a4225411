//! Simplex random features on the GPU: the fused feature map as a fraction of the measured
//! device-to-device copy bandwidth (bytes of x read + features written) and in TFLOP/s of its
//! projection (2 rows m d), and FAVOR+ attention (non-causal and causal) at lengths 1k to 64k
//! with batch x heads x length = 2^20 rows, head_dim 64, m = 256, bf16; at 4k also a training
//! step (forward + backward, op favor_*_fwd_bwd; favor_*_fwd_bwd_saved with the forward stages
//! saved for the backward).
//!
//! Every measurement prints a `RESULT {json}` line with keys family ("simplex"), op, dtype,
//! rows, dim, features, len, heads, impl ("spherekit" or "copy_d2d"), median_us, bytes, gbps,
//! frac_copy, tflops; benches/baselines/simplex.py prints the same keys for PyTorch (matmul +
//! max + exp; FAVOR+ by einsum and by cumsum; scaled_dot_product_attention). Timing: CUDA
//! events, after warm-up, median of many runs, on random inputs.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};
use half::bf16;
use spherekit::simplex::gpu::DeviceProjection;
use spherekit::simplex::{
    AttentionShape, Coupling, Favor, FeatureMap, KernelKind, ProjectionSpec, Stabilizer,
};
use spherekit::{Element, Gpu, Rows, RowsMut, Workspace};

fn random_host<T: Element>(n: usize, seed: u64) -> Vec<T> {
    let mut s = spherekit::simplex::projection::Stream::new(seed, 0, 0);
    (0..n).map(|_| T::from_f64(s.normal())).collect()
}

fn time_us(stream: &Arc<CudaStream>, f: impl FnMut()) -> f64 {
    spherekit::timing::median_us(stream, 3, 20, f).expect("timing")
}

/// Device-to-device copy bandwidth (bytes read + written), 1 GiB.
fn copy_gbps(stream: &Arc<CudaStream>) -> f64 {
    let n = 1usize << 28;
    let src: CudaSlice<f32> = stream.alloc_zeros(n).unwrap();
    let mut dst: CudaSlice<f32> = stream.alloc_zeros(n).unwrap();
    let us = time_us(stream, || stream.memcpy_dtod(&src, &mut dst).unwrap());
    let gbps = 2.0 * (n * 4) as f64 / us / 1e3;
    println!(
        "RESULT {{\"family\":\"simplex\",\"op\":\"copy\",\"dtype\":\"f32\",\"impl\":\"copy_d2d\",\"median_us\":{us:.3},\"bytes\":{},\"gbps\":{gbps:.1},\"frac_copy\":1.0}}",
        2 * n * 4
    );
    gbps
}

fn feature_map<T: Element>(gpu: &Gpu, stream: &Arc<CudaStream>, copy: f64, stabilizer: Stabilizer) {
    let (rows, d, m) = (1usize << 20, 64usize, 256usize);
    let w = ProjectionSpec::new(Coupling::Simplex, m, d, 1)
        .unwrap()
        .draw(0);
    let wd = DeviceProjection::upload(stream, &w).unwrap();
    let x: CudaSlice<T> = stream.clone_htod(&random_host::<T>(rows * d, 2)).unwrap();
    let mut out: CudaSlice<T> = stream.alloc_zeros(rows * m).unwrap();
    let mut shift: CudaSlice<f32> = stream.alloc_zeros(rows).unwrap();
    let map = FeatureMap {
        kernel: KernelKind::Softmax,
        stabilizer,
        eps: 1e-6,
        input_scale: (d as f64).powf(-0.25),
    };
    let us = time_us(stream, || {
        let xr = Rows::new(x.as_view(), rows, d).unwrap();
        let mut or = RowsMut::new(out.as_view_mut(), rows, m).unwrap();
        map.features(gpu, stream, &wd, &xr, &mut or, &mut shift.as_view_mut())
            .unwrap();
    });
    let size = T::DTYPE.size();
    let bytes = rows * (d + m) * size + rows * 4;
    let gbps = bytes as f64 / us / 1e3;
    let tflops = 2.0 * (rows * m * d) as f64 / us / 1e6;
    let variant = match stabilizer {
        Stabilizer::None => "none",
        Stabilizer::Row => "row",
        Stabilizer::Group { .. } => "group",
    };
    println!(
        "RESULT {{\"family\":\"simplex\",\"op\":\"features\",\"dtype\":\"{}\",\"rows\":{rows},\"dim\":{d},\"features\":{m},\"variant\":\"{variant}\",\"impl\":\"spherekit\",\"median_us\":{us:.3},\"bytes\":{bytes},\"gbps\":{gbps:.1},\"frac_copy\":{:.3},\"tflops\":{tflops:.2}}}",
        T::DTYPE.name(),
        gbps / copy
    );
}

/// FAVOR+ at one length: the forward pass (op favor_causal / favor_noncausal) and, when
/// `train`, forward + backward as a training step runs them (op favor_*_fwd_bwd, the backward
/// recomputing the forward stages; op favor_*_fwd_bwd_saved, the backward reading the stages
/// forward_saved kept).
fn favor(gpu: &Gpu, stream: &Arc<CudaStream>, len: usize, causal: bool, train: bool) {
    let (dim, m) = (64usize, 256usize);
    let heads = (1usize << 20) / len;
    let rows = heads * len;
    let shape = AttentionShape {
        heads,
        len,
        dim,
        value_dim: dim,
    };
    let w = ProjectionSpec::new(Coupling::Simplex, m, dim, 1)
        .unwrap()
        .draw(0);
    let wd = DeviceProjection::upload(stream, &w).unwrap();
    let up = |seed| -> CudaSlice<bf16> {
        stream
            .clone_htod(&random_host::<bf16>(rows * dim, seed))
            .unwrap()
    };
    let (q, k, v, dout) = (up(3), up(4), up(5), up(6));
    let zeros = || -> CudaSlice<bf16> { stream.alloc_zeros(rows * dim).unwrap() };
    let (mut out, mut dq, mut dk, mut dv) = (zeros(), zeros(), zeros(), zeros());
    let mut ws = Workspace::new();
    let opts = Favor {
        input_scale: (dim as f64).powf(-0.25),
        eps: 1e-6,
        guard: 1e-6,
        causal,
    };
    fn r(s: &CudaSlice<bf16>, rows: usize, dim: usize) -> Rows<'_, bf16> {
        Rows::new(s.as_view(), rows, dim).unwrap()
    }
    fn rm(s: &mut CudaSlice<bf16>, rows: usize, dim: usize) -> RowsMut<'_, bf16> {
        RowsMut::new(s.as_view_mut(), rows, dim).unwrap()
    }
    let mut forward = |ws: &mut Workspace| {
        let (qr, kr, vr) = (r(&q, rows, dim), r(&k, rows, dim), r(&v, rows, dim));
        opts.forward(
            gpu,
            stream,
            &shape,
            &wd,
            &qr,
            &kr,
            &vr,
            &mut rm(&mut out, rows, dim),
            ws,
        )
        .unwrap();
    };
    let name = if causal { "causal" } else { "noncausal" };
    let us = time_us(stream, || forward(&mut ws));
    println!(
        "RESULT {{\"family\":\"simplex\",\"op\":\"favor_{name}\",\"dtype\":\"bf16\",\"heads\":{heads},\"len\":{len},\"dim\":{dim},\"features\":{m},\"impl\":\"spherekit\",\"median_us\":{us:.3}}}"
    );
    if !train {
        return;
    }
    let mut ws_grad = Workspace::new();
    let us = time_us(stream, || {
        forward(&mut ws);
        let (qr, kr, vr, gr) = (
            r(&q, rows, dim),
            r(&k, rows, dim),
            r(&v, rows, dim),
            r(&dout, rows, dim),
        );
        opts.backward(
            gpu,
            stream,
            &shape,
            &wd,
            &qr,
            &kr,
            &vr,
            &gr,
            &mut rm(&mut dq, rows, dim),
            &mut rm(&mut dk, rows, dim),
            &mut rm(&mut dv, rows, dim),
            &mut ws_grad,
        )
        .unwrap();
    });
    println!(
        "RESULT {{\"family\":\"simplex\",\"op\":\"favor_{name}_fwd_bwd\",\"dtype\":\"bf16\",\"heads\":{heads},\"len\":{len},\"dim\":{dim},\"features\":{m},\"impl\":\"spherekit\",\"median_us\":{us:.3}}}"
    );
    // The same step with the forward's stages saved for the backward (forward_saved,
    // backward_saved): one feature map of q and k, the states and their prefix sums fewer.
    let us = time_us(stream, || {
        let (qr, kr, vr, gr) = (
            r(&q, rows, dim),
            r(&k, rows, dim),
            r(&v, rows, dim),
            r(&dout, rows, dim),
        );
        let saved = opts
            .forward_saved(
                gpu,
                stream,
                &shape,
                &wd,
                &qr,
                &kr,
                &vr,
                &mut rm(&mut out, rows, dim),
                &mut ws_grad,
            )
            .unwrap();
        opts.backward_saved(
            gpu,
            stream,
            &saved,
            &shape,
            &wd,
            &qr,
            &kr,
            &vr,
            &gr,
            &mut rm(&mut dq, rows, dim),
            &mut rm(&mut dk, rows, dim),
            &mut rm(&mut dv, rows, dim),
            &mut ws_grad,
        )
        .unwrap();
    });
    println!(
        "RESULT {{\"family\":\"simplex\",\"op\":\"favor_{name}_fwd_bwd_saved\",\"dtype\":\"bf16\",\"heads\":{heads},\"len\":{len},\"dim\":{dim},\"features\":{m},\"impl\":\"spherekit\",\"median_us\":{us:.3}}}"
    );
}

fn main() {
    let (gpu, stream) = match Gpu::open(0) {
        Ok(gpu) => {
            let stream = gpu.context().new_stream().expect("stream");
            (gpu, stream)
        }
        Err(e) => {
            println!("simplex bench: skipped: no CUDA device ({e})");
            return;
        }
    };
    let info = gpu.info();
    println!(
        "simplex bench on {} ({} SMs, cc {:?})",
        info.name, info.sm_count, info.compute_capability
    );
    let copy = copy_gbps(&stream);
    println!("device-to-device copy: {copy:.0} GB/s (read + write)");
    for stabilizer in [
        Stabilizer::None,
        Stabilizer::Row,
        Stabilizer::Group { rows: 1024 },
    ] {
        feature_map::<bf16>(&gpu, &stream, copy, stabilizer);
    }
    feature_map::<f32>(&gpu, &stream, copy, Stabilizer::Row);
    for len in [1024, 4096, 16384, 65536] {
        for causal in [false, true] {
            favor(&gpu, &stream, len, causal, len == 4096);
        }
    }
    stream.synchronize().unwrap();
}
