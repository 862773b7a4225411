//! The hyperspherical pieces of one nGPT training step, on the GPU, checked against the f64
//! references:
//!
//! 1. per-head q/k normalization with a learned per-channel scale s_qk (groups of 64 channels),
//! 2. the residual update h ← N(N(h) + |c p| ⊙ (N(u) − N(h))), fused,
//! 3. its backward (dh, du, dp),
//! 4. the weight projection after the optimizer step: rows of wte and q/k/v, columns of the
//!    output projection, all in one launch.
//!
//! `cargo run --release --example ngpt_step` (prints "skipped: no CUDA device" without one).

use half::bf16;
use spherekit::accuracy::segment_errors;
use spherekit::hypersphere::{Axis, Eps, LerpNormalize, Normalize, Projection, cpu};
use spherekit::{Gpu, Rows, RowsMut, Workspace};

type Error = Box<dyn std::error::Error>;

/// Deterministic pseudo-random normals (Box-Muller over xorshift).
fn normals(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| (-2.0 * next().ln()).sqrt() * (std::f64::consts::TAU * next()).cos())
        .collect()
}

/// bf16 storage, and the exact values it holds (what the references must see).
fn bf16_pair(v: &[f64]) -> (Vec<bf16>, Vec<f64>) {
    let stored: Vec<bf16> = v.iter().map(|&x| bf16::from_f64(x)).collect();
    let exact = stored.iter().map(|x| x.to_f64()).collect();
    (stored, exact)
}

fn widen(v: &[bf16]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn main() -> Result<(), Error> {
    let gpu = match Gpu::open(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("ngpt_step: skipped: no CUDA device ({e})");
            return Ok(());
        }
    };
    let stream = gpu.context().new_stream()?;
    let (tokens, d, head) = (2048, 768, 64);

    // 1. q with per-head normalization and scale s_qk.
    let (q, qf) = bf16_pair(&normals(tokens * d, 1));
    let (s_qk, sf) = bf16_pair(&vec![1.0 / (d as f64).sqrt() * 10.0; d]);
    let q_dev = stream.clone_htod(&q)?;
    let s_dev = stream.clone_htod(&s_qk)?;
    let mut q_out = stream.alloc_zeros::<bf16>(tokens * d)?;
    let qk_norm = Normalize::new(Eps::None).groups(head);
    qk_norm.forward(
        &gpu,
        &stream,
        &Rows::new(q_dev.slice(..), tokens, d)?,
        Some(&s_dev.slice(..)),
        &mut RowsMut::new(q_out.slice_mut(..), tokens, d)?,
    )?;
    let want = cpu::normalize_forward(&qk_norm, tokens, d, &qf, Some(&sf))?;
    let e = segment_errors(&widen(&stream.clone_dtoh(&q_out)?), &want, head);
    println!(
        "q/k normalization ({tokens} x {d}, heads of {head}): max error {:.1e} of a head's norm",
        e.max
    );

    // 2. The residual update, and 3. its backward.
    let (h, hf) = bf16_pair(&normals(tokens * d, 2));
    let (u, uf) = bf16_pair(&normals(tokens * d, 3));
    let (p, pf) = bf16_pair(&vec![0.05; d]);
    let (dy, dyf) = bf16_pair(&normals(tokens * d, 4));
    let lerp = LerpNormalize::ngpt(1.0); // p holds the learned rates |c p| = 0.05
    let (h_dev, u_dev, p_dev, dy_dev) = (
        stream.clone_htod(&h)?,
        stream.clone_htod(&u)?,
        stream.clone_htod(&p)?,
        stream.clone_htod(&dy)?,
    );
    let mut y = stream.alloc_zeros::<bf16>(tokens * d)?;
    let hr = Rows::new(h_dev.slice(..), tokens, d)?;
    let ur = Rows::new(u_dev.slice(..), tokens, d)?;
    lerp.forward(
        &gpu,
        &stream,
        &hr,
        &ur,
        &p_dev.slice(..),
        &mut RowsMut::new(y.slice_mut(..), tokens, d)?,
    )?;
    let want = cpu::lerp_normalize_forward(&lerp, tokens, d, &hf, &uf, &pf)?;
    let e = segment_errors(&widen(&stream.clone_dtoh(&y)?), &want, d);
    println!(
        "residual update N(N(h) + |c p| (N(u) - N(h))): max error {:.1e}",
        e.max
    );

    let (mut dh, mut du, mut dp) = (
        stream.alloc_zeros::<bf16>(tokens * d)?,
        stream.alloc_zeros::<bf16>(tokens * d)?,
        stream.alloc_zeros::<bf16>(d)?,
    );
    let mut workspace = Workspace::new();
    lerp.backward(
        &gpu,
        &stream,
        &hr,
        &ur,
        &p_dev.slice(..),
        &Rows::new(dy_dev.slice(..), tokens, d)?,
        &mut RowsMut::new(dh.slice_mut(..), tokens, d)?,
        &mut RowsMut::new(du.slice_mut(..), tokens, d)?,
        Some(&mut dp.slice_mut(..)),
        &mut workspace,
    )?;
    let want = cpu::lerp_normalize_backward(&lerp, tokens, d, &hf, &uf, &pf, &dyf)?;
    let eh = segment_errors(&widen(&stream.clone_dtoh(&dh)?), &want.dh, d);
    let eu = segment_errors(&widen(&stream.clone_dtoh(&du)?), &want.du, d);
    let ep = segment_errors(&widen(&stream.clone_dtoh(&dp)?), &want.dp, d);
    println!(
        "its backward: max error dh {:.1e}, du {:.1e}, dp {:.1e}",
        eh.max, eu.max, ep.max
    );

    // 4. Weight projection: wte and q/k/v by rows, the output projection by columns.
    let shapes = [
        (50304 / 16, d, Axis::Rows),
        (d, d, Axis::Rows),
        (d, 4 * d, Axis::Cols),
    ];
    let host: Vec<(Vec<bf16>, Vec<f64>)> = shapes
        .iter()
        .enumerate()
        .map(|(i, &(r, c, _))| bf16_pair(&normals(r * c, 10 + i as u64)))
        .collect();
    let mut devs = host
        .iter()
        .map(|(w, _)| stream.clone_htod(w))
        .collect::<Result<Vec<_>, _>>()?;
    {
        let mut views = devs
            .iter_mut()
            .zip(&shapes)
            .map(|(dv, &(r, c, a))| Ok((RowsMut::new(dv.slice_mut(..), r, c)?, a)))
            .collect::<Result<Vec<_>, spherekit::Error>>()?;
        let mut refs: Vec<_> = views.iter_mut().map(|(v, a)| (v, *a)).collect();
        Projection::new(Eps::None).project_many(&gpu, &stream, &mut refs)?;
    }
    for ((dev, (_, exact)), &(r, c, axis)) in devs.iter().zip(&host).zip(&shapes) {
        let mut want = exact.clone();
        cpu::project(&Projection::new(Eps::None), r, c, &mut want, axis)?;
        let got = widen(&stream.clone_dtoh(dev)?);
        let transpose = |v: &[f64]| -> Vec<f64> {
            (0..c)
                .flat_map(|j| (0..r).map(move |i| v[i * c + j]))
                .collect()
        };
        let e = match axis {
            Axis::Rows => segment_errors(&got, &want, c),
            Axis::Cols => segment_errors(&transpose(&got), &transpose(&want), r),
        };
        println!(
            "projection of a {r} x {c} matrix along {axis:?}: max error {:.1e}",
            e.max
        );
    }
    Ok(())
}
