//! Hyperspherical normalization: kernels against the f64 CPU reference.
//!
//! Every case runs on two backends: the CPU emulator of the kernels (feature `emulator`, always
//! in the test command) and the GPU (tests named `gpu_*`, skipped visibly without a device,
//! failing instead with SPHEREKIT_REQUIRE_GPU=1). Inputs are random with a fresh seed per run
//! (SPHEREKIT_SEED reproduces one), outputs are poisoned with NaN first, rows are strided and
//! sometimes misaligned, and every tier of every op is forced at least once. The references
//! themselves are checked against finite differences and exact identities in
//! src/hypersphere/cpu.rs.
//!
//! Tolerances (per row segment, `want` the f64 reference from the same rounded inputs):
//! forward |got − want| ≤ ulp_T(want) + 1e-6·‖want‖ (no ulp term for f32), backward the same
//! with 1e-5; column sums (dscale, dp) 1e-5 relative to the sum of the absolute terms.

// The case builders take a shape, a layout and options; a struct per case would hide them.
#![allow(clippy::too_many_arguments)]

mod common;

use std::sync::Arc;

use common::*;
use cudarc::driver::CudaStream;
use half::{bf16, f16};
use spherekit::hypersphere::gpu::{LERP_BWD_VECTOR_TIERS, SCALAR_TIERS, VECTOR_TIERS};
use spherekit::hypersphere::{Axis, Eps, LerpNormalize, Normalize, Projection, Tier, cpu};
use spherekit::params::*;
use spherekit::{DType, Element, Error, Gpu, Rows, RowsMut, Workspace};

// ---- backends -------------------------------------------------------------------------------

/// Runs the public entry points on one target, host matrices in and out.
trait Backend {
    fn norm_fwd<T: Element>(
        &self,
        op: &Normalize,
        x: &Mat<T>,
        s: Option<&[T]>,
        y: &mut Mat<T>,
    ) -> spherekit::Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn norm_bwd<T: Element>(
        &self,
        op: &Normalize,
        x: &Mat<T>,
        s: Option<&[T]>,
        dy: &Mat<T>,
        dx: &mut Mat<T>,
        ds: Option<&mut Vec<T>>,
    ) -> spherekit::Result<()>;
    fn lerp_fwd<T: Element>(
        &self,
        op: &LerpNormalize,
        h: &Mat<T>,
        u: &Mat<T>,
        p: &[T],
        y: &mut Mat<T>,
    ) -> spherekit::Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn lerp_bwd<T: Element>(
        &self,
        op: &LerpNormalize,
        h: &Mat<T>,
        u: &Mat<T>,
        p: &[T],
        dy: &Mat<T>,
        dh: &mut Mat<T>,
        du: &mut Mat<T>,
        dp: Option<&mut Vec<T>>,
    ) -> spherekit::Result<()>;
    fn project<T: Element>(
        &self,
        proj: &Projection,
        mats: &mut [(&mut Mat<T>, Axis)],
    ) -> spherekit::Result<()>;
}

#[cfg(feature = "emulator")]
mod emu_backend {
    use super::*;
    use spherekit::emulator::{Emulator, HostRows, HostRowsMut};

    pub struct Emu(pub Emulator);

    fn rows<T: Element>(m: &Mat<T>) -> HostRows<'_, T> {
        HostRows::new(m.view(), m.rows, m.cols, m.stride).expect("valid test matrix")
    }
    fn rows_mut<T: Element>(m: &mut Mat<T>) -> HostRowsMut<'_, T> {
        let (r, c, s) = (m.rows, m.cols, m.stride);
        HostRowsMut::new(m.view_mut(), r, c, s).expect("valid test matrix")
    }

    impl Backend for Emu {
        fn norm_fwd<T: Element>(
            &self,
            op: &Normalize,
            x: &Mat<T>,
            s: Option<&[T]>,
            y: &mut Mat<T>,
        ) -> spherekit::Result<()> {
            op.forward_emulated(&self.0, &rows(x), s, &mut rows_mut(y))
        }
        fn norm_bwd<T: Element>(
            &self,
            op: &Normalize,
            x: &Mat<T>,
            s: Option<&[T]>,
            dy: &Mat<T>,
            dx: &mut Mat<T>,
            ds: Option<&mut Vec<T>>,
        ) -> spherekit::Result<()> {
            op.backward_emulated(
                &self.0,
                &rows(x),
                s,
                &rows(dy),
                &mut rows_mut(dx),
                ds.map(|d| d.as_mut_slice()),
            )
        }
        fn lerp_fwd<T: Element>(
            &self,
            op: &LerpNormalize,
            h: &Mat<T>,
            u: &Mat<T>,
            p: &[T],
            y: &mut Mat<T>,
        ) -> spherekit::Result<()> {
            op.forward_emulated(&self.0, &rows(h), &rows(u), p, &mut rows_mut(y))
        }
        fn lerp_bwd<T: Element>(
            &self,
            op: &LerpNormalize,
            h: &Mat<T>,
            u: &Mat<T>,
            p: &[T],
            dy: &Mat<T>,
            dh: &mut Mat<T>,
            du: &mut Mat<T>,
            dp: Option<&mut Vec<T>>,
        ) -> spherekit::Result<()> {
            op.backward_emulated(
                &self.0,
                &rows(h),
                &rows(u),
                p,
                &rows(dy),
                &mut rows_mut(dh),
                &mut rows_mut(du),
                dp.map(|d| d.as_mut_slice()),
            )
        }
        fn project<T: Element>(
            &self,
            proj: &Projection,
            mats: &mut [(&mut Mat<T>, Axis)],
        ) -> spherekit::Result<()> {
            let mut hosts: Vec<(HostRowsMut<'_, T>, Axis)> =
                mats.iter_mut().map(|(m, a)| (rows_mut(m), *a)).collect();
            let mut refs: Vec<(&mut HostRowsMut<'_, T>, Axis)> =
                hosts.iter_mut().map(|(h, a)| (h, *a)).collect();
            proj.project_many_emulated(&self.0, &mut refs)
        }
    }
}

/// The GPU: buffers uploaded per call, results copied back after a synchronization.
struct Device {
    gpu: Gpu,
    stream: Arc<CudaStream>,
}

impl Device {
    fn up<T: Element>(&self, v: &[T]) -> cudarc::driver::CudaSlice<T> {
        self.stream.clone_htod(v).expect("upload")
    }
    fn down<T: Element>(&self, d: &cudarc::driver::CudaSlice<T>, out: &mut [T]) {
        self.stream.memcpy_dtoh(d, out).expect("download");
        self.stream.synchronize().expect("synchronize");
    }
}

macro_rules! dev_rows {
    ($slice:expr, $m:expr) => {
        Rows::with_stride($slice.slice($m.offset..), $m.rows, $m.cols, $m.stride)
            .expect("valid test matrix")
    };
}
macro_rules! dev_rows_mut {
    ($slice:expr, $m:expr) => {
        RowsMut::with_stride($slice.slice_mut($m.offset..), $m.rows, $m.cols, $m.stride)
            .expect("valid test matrix")
    };
}

impl Backend for Device {
    fn norm_fwd<T: Element>(
        &self,
        op: &Normalize,
        x: &Mat<T>,
        s: Option<&[T]>,
        y: &mut Mat<T>,
    ) -> spherekit::Result<()> {
        let dx = self.up(&x.data);
        let ds = s.map(|s| self.up(s));
        let mut dy = self.up(&y.data);
        let sv = ds.as_ref().map(|d| d.slice(..));
        op.forward(
            &self.gpu,
            &self.stream,
            &dev_rows!(dx, x),
            sv.as_ref(),
            &mut dev_rows_mut!(dy, y),
        )?;
        self.down(&dy, &mut y.data);
        Ok(())
    }
    fn norm_bwd<T: Element>(
        &self,
        op: &Normalize,
        x: &Mat<T>,
        s: Option<&[T]>,
        dy: &Mat<T>,
        dx: &mut Mat<T>,
        ds: Option<&mut Vec<T>>,
    ) -> spherekit::Result<()> {
        let d_x = self.up(&x.data);
        let d_s = s.map(|s| self.up(s));
        let d_dy = self.up(&dy.data);
        let mut d_dx = self.up(&dx.data);
        let mut d_ds = ds.as_ref().map(|d| self.up(d));
        let sv = d_s.as_ref().map(|d| d.slice(..));
        let mut dsv = d_ds.as_mut().map(|d| d.slice_mut(..));
        let mut ws = Workspace::new();
        op.backward(
            &self.gpu,
            &self.stream,
            &dev_rows!(d_x, x),
            sv.as_ref(),
            &dev_rows!(d_dy, dy),
            &mut dev_rows_mut!(d_dx, dx),
            dsv.as_mut(),
            &mut ws,
        )?;
        self.down(&d_dx, &mut dx.data);
        if let (Some(d), Some(out)) = (d_ds, ds) {
            self.down(&d, out);
        }
        Ok(())
    }
    fn lerp_fwd<T: Element>(
        &self,
        op: &LerpNormalize,
        h: &Mat<T>,
        u: &Mat<T>,
        p: &[T],
        y: &mut Mat<T>,
    ) -> spherekit::Result<()> {
        let (dh, du, dp) = (self.up(&h.data), self.up(&u.data), self.up(p));
        let mut dy = self.up(&y.data);
        op.forward(
            &self.gpu,
            &self.stream,
            &dev_rows!(dh, h),
            &dev_rows!(du, u),
            &dp.slice(..),
            &mut dev_rows_mut!(dy, y),
        )?;
        self.down(&dy, &mut y.data);
        Ok(())
    }
    fn lerp_bwd<T: Element>(
        &self,
        op: &LerpNormalize,
        h: &Mat<T>,
        u: &Mat<T>,
        p: &[T],
        dy: &Mat<T>,
        dh: &mut Mat<T>,
        du: &mut Mat<T>,
        dp: Option<&mut Vec<T>>,
    ) -> spherekit::Result<()> {
        let (d_h, d_u, d_p, d_dy) = (
            self.up(&h.data),
            self.up(&u.data),
            self.up(p),
            self.up(&dy.data),
        );
        let mut d_dh = self.up(&dh.data);
        let mut d_du = self.up(&du.data);
        let mut d_dp = dp.as_ref().map(|d| self.up(d));
        let mut dpv = d_dp.as_mut().map(|d| d.slice_mut(..));
        let mut ws = Workspace::new();
        op.backward(
            &self.gpu,
            &self.stream,
            &dev_rows!(d_h, h),
            &dev_rows!(d_u, u),
            &d_p.slice(..),
            &dev_rows!(d_dy, dy),
            &mut dev_rows_mut!(d_dh, dh),
            &mut dev_rows_mut!(d_du, du),
            dpv.as_mut(),
            &mut ws,
        )?;
        self.down(&d_dh, &mut dh.data);
        self.down(&d_du, &mut du.data);
        if let (Some(d), Some(out)) = (d_dp, dp) {
            self.down(&d, out);
        }
        Ok(())
    }
    fn project<T: Element>(
        &self,
        proj: &Projection,
        mats: &mut [(&mut Mat<T>, Axis)],
    ) -> spherekit::Result<()> {
        let mut bufs: Vec<_> = mats.iter().map(|(m, _)| self.up(&m.data)).collect();
        {
            let mut rows: Vec<(RowsMut<'_, T>, Axis)> = bufs
                .iter_mut()
                .zip(mats.iter())
                .map(|(b, (m, a))| (dev_rows_mut!(b, m), *a))
                .collect();
            let mut refs: Vec<(&mut RowsMut<'_, T>, Axis)> =
                rows.iter_mut().map(|(r, a)| (r, *a)).collect();
            proj.project_many(&self.gpu, &self.stream, &mut refs)?;
        }
        for (b, (m, _)) in bufs.iter().zip(mats.iter_mut()) {
            self.down(b, &mut m.data);
        }
        Ok(())
    }
}

// ---- cases ----------------------------------------------------------------------------------

/// Register-tier capacity (elements per segment) of a team of `tps` threads.
fn capacity(elems: u32, tps: u32, vector: bool) -> usize {
    (tps * if vector { elems } else { elems / 4 }) as usize
}

/// Segment lengths that exercise every tier of an op: for each vector tier a multiple of the
/// vector width above the previous tier's capacity, for each scalar tier an odd length, and
/// two lengths for the streaming tiers.
fn tier_cases(dtype: DType, elems: u32, vector_tiers: &[u32]) -> Vec<(usize, Tier)> {
    let vec = dtype.vector_width();
    let mut cases = Vec::new();
    let mut prev = 0;
    for (i, &t) in vector_tiers.iter().enumerate() {
        let cap = capacity(elems, t, true);
        // Alternate between a full team and one just above the previous tier.
        let len = if i % 2 == 0 {
            cap
        } else {
            (prev + vec).min(cap)
        };
        cases.push((len.max(vec), Tier::Team(t)));
        prev = cap;
    }
    prev = 0;
    for &t in &SCALAR_TIERS {
        let cap = capacity(elems, t, false);
        cases.push(((prev + 1).max(cap - 1) | 1, Tier::Team(t)));
        prev = cap;
    }
    cases.push((3 * vec * 517, Tier::Stream));
    cases.push((3001, Tier::Stream));
    cases
}

/// Rows for a case: enough to give every worker several segments at small lengths, few at
/// large ones (the emulator runs every thread).
fn rows_for(len: usize) -> usize {
    match len {
        0..=64 => 37,
        65..=512 => 11,
        513..=4096 => 5,
        _ => 3,
    }
}

const EPS_MODES: [Eps; 4] = [
    Eps::None,
    Eps::Clamp(1e-8),
    Eps::Add(1e-6),
    Eps::Inside(1e-12),
];

fn random_mat<T: Element>(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    pad: usize,
    offset: usize,
) -> Mat<T> {
    // Rows of different magnitudes so that no single scale hides an error.
    let scales: Vec<f64> = (0..rows)
        .map(|_| 10f64.powf(rng.uniform(-2.0, 2.0)))
        .collect();
    Mat::from_fn(rows, cols, cols + pad, offset, |r, _| {
        scales[r] * rng.normal()
    })
}

fn random_vec<T: Element>(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<T> {
    (0..n).map(|_| T::from_f64(rng.uniform(lo, hi))).collect()
}

fn check(result: Result<f64, String>, seed: u64) -> f64 {
    match result {
        Ok(worst) => worst,
        Err(msg) => panic!("{msg} (SPHEREKIT_SEED={seed})"),
    }
}

// ---- normalize ------------------------------------------------------------------------------

fn normalize_case<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    op: &Normalize,
    rows: usize,
    cols: usize,
    pad: usize,
    offset: usize,
    with_scale: bool,
) -> f64 {
    let x: Mat<T> = random_mat(rng, rows, cols, pad, offset);
    let s: Option<Vec<T>> = with_scale.then(|| random_vec(rng, cols, 0.5, 2.0));
    let mut y = Mat::<T>::poisoned(rows, cols, cols + 2 * pad, offset);
    b.norm_fwd(op, &x, s.as_deref(), &mut y)
        .unwrap_or_else(|e| panic!("normalize {op:?} {rows}x{cols}: {e}"));
    assert!(y.padding_untouched(), "normalize wrote outside its rows");
    let sf = s.as_ref().map(|s| widened(s));
    let want =
        cpu::normalize_forward(op, rows, cols, &x.to_f64(), sf.as_deref()).expect("reference");
    let seg = op.group.unwrap_or(cols);
    check(
        compare(
            &format!("normalize {:?} {op:?} {rows}x{cols}", T::DTYPE),
            T::DTYPE,
            &y.to_f64(),
            &want,
            seg,
            storage_ulps(T::DTYPE),
            FWD_REL,
        ),
        rng.seed,
    )
}

fn normalize_bwd_case<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    op: &Normalize,
    rows: usize,
    cols: usize,
    pad: usize,
    offset: usize,
    with_scale: bool,
) -> f64 {
    let x: Mat<T> = random_mat(rng, rows, cols, pad, offset);
    let dy: Mat<T> = random_mat(rng, rows, cols, 2 * pad, offset);
    let s: Option<Vec<T>> = with_scale.then(|| random_vec(rng, cols, 0.5, 2.0));
    let what = format!("normalize backward {:?} {op:?} {rows}x{cols}", T::DTYPE);
    normalize_bwd_check(b, rng, op, &x, s.as_deref(), &dy, &what)
}

/// Runs normalize backward on `b` (dx poisoned, with x's padding and offset; dscale when there
/// is a scale) and checks dx and dscale against the f64 reference; returns dx's worst error.
fn normalize_bwd_check<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    op: &Normalize,
    x: &Mat<T>,
    s: Option<&[T]>,
    dy: &Mat<T>,
    what: &str,
) -> f64 {
    let (rows, cols, pad, offset) = (x.rows, x.cols, x.stride - x.cols, x.offset);
    let mut dx = Mat::<T>::poisoned(rows, cols, cols + pad, offset);
    let mut ds: Option<Vec<T>> = s.map(|_| vec![T::from_f64(f64::NAN); cols]);
    b.norm_bwd(op, x, s, dy, &mut dx, ds.as_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(dx.padding_untouched(), "{what}: wrote outside its rows");
    let sf = s.map(|s| widened(s));
    let (xf, dyf) = (x.to_f64(), dy.to_f64());
    let want =
        cpu::normalize_backward(op, rows, cols, &xf, sf.as_deref(), &dyf).expect("reference");
    let seg = op.group.unwrap_or(cols);
    // dx = r (g - <yhat, g> yhat) can cancel to nearly nothing (a one-element row has dx = 0):
    // measure errors against r * ||g|| per segment, r = ||N(x)|| / ||x||.
    let yhat = cpu::normalize_forward(op, rows, cols, &xf, None).expect("reference");
    let g: Vec<f64> = match &sf {
        Some(s) => dyf
            .iter()
            .enumerate()
            .map(|(i, d)| d * s[i % cols])
            .collect(),
        None => dyf.clone(),
    };
    let norms: Vec<f64> = (0..rows * cols / seg)
        .map(|k| {
            let r = k * seg..(k + 1) * seg;
            let nx = finite_norm(&xf[r.clone()]);
            let scale = if nx > 0.0 {
                finite_norm(&yhat[r.clone()]) / nx
            } else {
                0.0
            };
            finite_norm(&want.dx[r.clone()]).max(scale * finite_norm(&g[r]))
        })
        .collect();
    let worst = check(
        compare_scaled(
            &format!("{what} dx"),
            T::DTYPE,
            &dx.to_f64(),
            &want.dx,
            seg,
            storage_ulps(T::DTYPE),
            BWD_REL,
            &norms,
        ),
        rng.seed,
    );
    if let (Some(got), Some(want_ds)) = (ds, want.dscale) {
        // Magnitude of the column sums: sum over rows of |dy * N(x)|.
        let mut mag = vec![0.0; cols];
        for (i, (d, y)) in dyf.iter().zip(&yhat).enumerate() {
            mag[i % cols] += (d * y).abs();
        }
        check_sums(
            &format!("{what} dscale"),
            T::DTYPE,
            &widened(&got),
            &want_ds,
            &mag,
            rng.seed,
        );
    }
    worst
}

/// Column sums: |got - want| <= ulp_T(want) + 1e-5 * sum of |terms| per entry.
fn check_sums(what: &str, dtype: DType, got: &[f64], want: &[f64], magnitude: &[f64], seed: u64) {
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(magnitude).enumerate() {
        let tol = storage_ulps(dtype) * ulp(dtype, w) + 1e-5 * m;
        assert!(
            (g - w).abs() <= tol || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g:e}, want {w:e} (tolerance {tol:e}, SPHEREKIT_SEED={seed})"
        );
    }
}

fn normalize_all_tiers<T: Element, B: Backend>(b: &B) {
    let mut rng = Rng::new();
    let mut worst: f64 = 0.0;
    for (i, (len, tier)) in tier_cases(T::DTYPE, SK_NORM_FWD_ELEMS, &VECTOR_TIERS)
        .into_iter()
        .enumerate()
    {
        let op = Normalize::new(EPS_MODES[i % 4]).with_tier(tier);
        let pad = if i % 3 == 0 {
            0
        } else {
            T::DTYPE.vector_width()
        };
        worst = worst.max(normalize_case::<T, B>(
            b,
            &mut rng,
            &op,
            rows_for(len),
            len,
            pad,
            0,
            i % 2 == 1,
        ));
    }
    for (i, (len, tier)) in tier_cases(T::DTYPE, SK_NORM_BWD_ELEMS, &VECTOR_TIERS)
        .into_iter()
        .enumerate()
    {
        let op = Normalize::new(EPS_MODES[(i + 1) % 4]).with_tier(tier);
        worst = worst.max(normalize_bwd_case::<T, B>(
            b,
            &mut rng,
            &op,
            rows_for(len),
            len,
            0,
            0,
            i % 2 == 0,
        ));
    }
    assert!(worst.is_finite());
}

fn normalize_layouts<T: Element, B: Backend>(b: &B) {
    let mut rng = Rng::new();
    let vec = T::DTYPE.vector_width();
    // (rows, cols, group, pad, offset, scale): groups (per-head q/k), odd and prime rows,
    // strided rows, a misaligned start (one element: scalar tiers), and automatic tiers.
    let shapes: [(usize, usize, Option<usize>, usize, usize, bool); 9] = [
        (33, 256, Some(64), 0, 0, true),
        (17, 96, Some(8 * vec / 2), vec, 0, true),
        (9, 7 * 12, Some(7), 3, 0, false),
        (5, 1021, None, 5, 0, true),
        (64, 1, None, 0, 0, false),
        (7, 512, None, 0, 1, true),
        (3, 5000, None, 0, 0, true),
        (2, 40_000, None, 0, 0, false),
        (129, 32, Some(16), 0, 0, true),
    ];
    for (i, &(rows, cols, group, pad, offset, scale)) in shapes.iter().enumerate() {
        let mut op = Normalize::new(EPS_MODES[i % 4]);
        op.group = group;
        normalize_case::<T, B>(b, &mut rng, &op, rows, cols, pad, offset, scale);
        normalize_bwd_case::<T, B>(b, &mut rng, &op, rows, cols, pad, offset, scale);
    }
}

/// Rows near the edges of the representable range, zero rows, rows just below and above eps,
/// and a NaN row, beside ordinary ones: each must match the reference and leave the other rows
/// alone. The eight kinds of row repeat `copies` times (fresh random directions each time), in
/// rows of `cols` elements (a multiple of 8 takes the vector tiers, others the scalar ones).
fn normalize_extremes<T: Element, B: Backend>(b: &B, copies: usize, cols: usize) {
    let mut rng = Rng::new();
    // Row norms to build (NaN: a row with one NaN entry). f16 has a narrow range: its eps and
    // extremes are scaled to stay representable.
    let (huge, tiny, modes) = match T::DTYPE {
        DType::F16 => (
            3e4,
            1e-3,
            [
                Eps::None,
                Eps::Clamp(1e-2),
                Eps::Add(1e-3),
                Eps::Inside(1e-5),
            ],
        ),
        _ => (1e38, 1e-37, EPS_MODES),
    };
    for eps in modes {
        let e = f64::from(eps.value()).max(1e-3 * tiny);
        let norms = [1.0, huge, tiny, 0.0, 0.5 * e, 2.0 * e, f64::NAN, 3.0];
        let rows: Vec<Vec<f64>> = norms
            .iter()
            .cycle()
            .take(norms.len() * copies)
            .map(|&n| {
                let v: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
                let scale = if n.is_nan() { 1.0 } else { n / cpu::norm2(&v) };
                let mut v: Vec<f64> = v.iter().map(|x| x * scale).collect();
                if n.is_nan() {
                    v[5] = f64::NAN;
                }
                v
            })
            .collect();
        let x: Mat<T> = Mat::from_fn(rows.len(), cols, cols, 0, |r, c| rows[r][c]);
        let dy: Mat<T> = random_mat(&mut rng, rows.len(), cols, 0, 0);
        for tier in [Tier::Auto, Tier::Stream] {
            let op = Normalize::new(eps).with_tier(tier);
            let what = format!("extremes {:?} {op:?}", T::DTYPE);
            let mut y = Mat::<T>::poisoned(x.rows, cols, cols, 0);
            b.norm_fwd(&op, &x, None, &mut y)
                .expect("normalize extremes");
            let want = cpu::normalize_forward(&op, x.rows, cols, &x.to_f64(), None).unwrap();
            check(
                compare(
                    &what,
                    T::DTYPE,
                    &y.to_f64(),
                    &want,
                    cols,
                    storage_ulps(T::DTYPE),
                    FWD_REL,
                ),
                rng.seed,
            );
            let mut dx = Mat::<T>::poisoned(x.rows, cols, cols, 0);
            b.norm_bwd(&op, &x, None, &dy, &mut dx, None)
                .expect("normalize backward extremes");
            let want = cpu::normalize_backward(&op, x.rows, cols, &x.to_f64(), None, &dy.to_f64())
                .unwrap();
            check(
                compare(
                    &format!("{what} backward"),
                    T::DTYPE,
                    &dx.to_f64(),
                    &want.dx,
                    cols,
                    storage_ulps(T::DTYPE),
                    BWD_REL,
                ),
                rng.seed,
            );
        }
    }
}

// ---- lerp_normalize -------------------------------------------------------------------------

fn lerp_ops(tier: Tier, i: usize) -> LerpNormalize {
    LerpNormalize {
        eps: EPS_MODES[i % 4],
        renorm_h: i.is_multiple_of(2),
        abs_alpha: (i / 2).is_multiple_of(2),
        c: if i.is_multiple_of(3) { 0.05 } else { -0.7 },
        tier,
    }
}

fn lerp_case<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    op: &LerpNormalize,
    rows: usize,
    cols: usize,
    pad: usize,
    offset: usize,
    scalar_p: bool,
    backward: bool,
) {
    let h: Mat<T> = random_mat(rng, rows, cols, pad, offset);
    let u: Mat<T> = random_mat(rng, rows, cols, 2 * pad, offset);
    let mut p: Vec<T> = random_vec(rng, if scalar_p { 1 } else { cols }, -1.5, 1.5);
    // Exact zeros in p: |c p| has a kink there, where dp follows torch's sign(0) = 0.
    for v in p.iter_mut().skip(usize::from(scalar_p)).step_by(7) {
        *v = T::from_f64(0.0);
    }
    let (hf, uf, pf) = (h.to_f64(), u.to_f64(), widened(&p));
    let what = format!(
        "lerp {:?} {op:?} {rows}x{cols} scalar_p={scalar_p}",
        T::DTYPE
    );
    if !backward {
        let mut y = Mat::<T>::poisoned(rows, cols, cols + pad, offset);
        b.lerp_fwd(op, &h, &u, &p, &mut y)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(y.padding_untouched(), "{what}: wrote outside its rows");
        let want = cpu::lerp_normalize_forward(op, rows, cols, &hf, &uf, &pf).expect("reference");
        check(
            compare(
                &what,
                T::DTYPE,
                &y.to_f64(),
                &want,
                cols,
                storage_ulps(T::DTYPE),
                FWD_REL,
            ),
            rng.seed,
        );
        return;
    }
    let dy: Mat<T> = random_mat(rng, rows, cols, pad, offset);
    lerp_bwd_check(b, rng, op, &h, &u, &p, &dy, &what);
}

/// Runs lerp backward on `b` (outputs poisoned, with padding and the inputs' offset) and checks
/// dh, du and dp against the f64 reference.
#[allow(clippy::too_many_arguments)]
fn lerp_bwd_check<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    op: &LerpNormalize,
    h: &Mat<T>,
    u: &Mat<T>,
    p: &[T],
    dy: &Mat<T>,
    what: &str,
) {
    let (rows, cols, pad, offset) = (h.rows, h.cols, h.stride - h.cols, h.offset);
    let (hf, uf, pf) = (h.to_f64(), u.to_f64(), widened(p));
    let mut dh = Mat::<T>::poisoned(rows, cols, cols + pad, offset);
    let mut du = Mat::<T>::poisoned(rows, cols, cols, offset);
    let mut dp: Vec<T> = vec![T::from_f64(f64::NAN); p.len()];
    b.lerp_bwd(op, h, u, p, dy, &mut dh, &mut du, Some(&mut dp))
        .unwrap_or_else(|e| panic!("{what} backward: {e}"));
    assert!(
        dh.padding_untouched() && du.padding_untouched(),
        "{what}: wrote outside its rows"
    );
    let want = cpu::lerp_normalize_backward(op, rows, cols, &hf, &uf, &pf, &dy.to_f64())
        .expect("reference");
    check(
        compare(
            &format!("{what} dh"),
            T::DTYPE,
            &dh.to_f64(),
            &want.dh,
            cols,
            storage_ulps(T::DTYPE),
            BWD_REL,
        ),
        rng.seed,
    );
    check(
        compare(
            &format!("{what} du"),
            T::DTYPE,
            &du.to_f64(),
            &want.du,
            cols,
            storage_ulps(T::DTYPE),
            BWD_REL,
        ),
        rng.seed,
    );
    // dp sums gz (b - a) dalpha/dp over rows (and channels for scalar p): magnitude from the
    // reference's own per-row contributions is not exposed, so bound it by rows * ‖dp‖∞ terms.
    let scale = want
        .dp
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-30);
    let mag: Vec<f64> = want.dp.iter().map(|_| scale * rows as f64).collect();
    check_sums(
        &format!("{what} dp"),
        T::DTYPE,
        &widened(&dp),
        &want.dp,
        &mag,
        rng.seed,
    );
}

fn lerp_all_tiers<T: Element, B: Backend>(b: &B) {
    let mut rng = Rng::new();
    for (i, (len, tier)) in tier_cases(T::DTYPE, SK_LERP_FWD_ELEMS, &VECTOR_TIERS)
        .into_iter()
        .enumerate()
    {
        let pad = (i % 2) * T::DTYPE.vector_width();
        lerp_case::<T, B>(
            b,
            &mut rng,
            &lerp_ops(tier, i),
            rows_for(len),
            len,
            pad,
            0,
            i % 4 == 3,
            false,
        );
    }
    for (i, (len, tier)) in tier_cases(T::DTYPE, SK_LERP_BWD_ELEMS, &LERP_BWD_VECTOR_TIERS)
        .into_iter()
        .enumerate()
    {
        lerp_case::<T, B>(
            b,
            &mut rng,
            &lerp_ops(tier, i + 1),
            rows_for(len),
            len,
            0,
            0,
            i % 4 == 1,
            true,
        );
    }
    // Automatic tiers, a misaligned start and odd widths.
    for (i, &(rows, cols, offset)) in [(31, 64, 0), (4, 777, 0), (6, 512, 1), (2, 20_000, 0)]
        .iter()
        .enumerate()
    {
        for backward in [false, true] {
            lerp_case::<T, B>(
                b,
                &mut rng,
                &lerp_ops(Tier::Auto, i),
                rows,
                cols,
                0,
                offset,
                i == 2,
                backward,
            );
        }
    }
}

// ---- projection -----------------------------------------------------------------------------

fn projection_case<T: Element, B: Backend>(b: &B) {
    let mut rng = Rng::new();
    let vec = T::DTYPE.vector_width();
    // Mixed shapes and axes in one batch: aligned and odd widths, tall and wide.
    let shapes = [
        (64, 8 * vec, Axis::Rows),
        (40, 33, Axis::Cols),
        (7, 300, Axis::Cols),
        (300, 7, Axis::Rows),
        (13, 4 * vec, Axis::Cols),
        (1, 1000, Axis::Rows),
    ];
    for eps in [Eps::None, Eps::Clamp(1e-8)] {
        let proj = Projection::new(eps);
        let mut mats: Vec<Mat<T>> = shapes
            .iter()
            .map(|&(r, c, _)| random_mat(&mut rng, r, c, if c % 2 == 1 { 3 } else { 0 }, 0))
            .collect();
        let originals: Vec<Vec<f64>> = mats.iter().map(|m| m.to_f64()).collect();
        {
            let mut refs: Vec<(&mut Mat<T>, Axis)> = mats
                .iter_mut()
                .zip(&shapes)
                .map(|(m, s)| (m, s.2))
                .collect();
            b.project(&proj, &mut refs).expect("projection");
        }
        for ((m, orig), &(rows, cols, axis)) in mats.iter().zip(&originals).zip(&shapes) {
            let mut want = orig.clone();
            cpu::project(&proj, rows, cols, &mut want, axis).unwrap();
            let got = m.to_f64();
            let what = format!("project {:?} {rows}x{cols} {axis:?} {eps:?}", T::DTYPE);
            // Compare along the normalized lines: transpose columns into segments.
            let (g, w, seg) = match axis {
                Axis::Rows => (got, want, cols),
                Axis::Cols => (
                    transpose(&got, rows, cols),
                    transpose(&want, rows, cols),
                    rows,
                ),
            };
            check(
                compare(
                    &what,
                    T::DTYPE,
                    &g,
                    &w,
                    seg,
                    storage_ulps(T::DTYPE),
                    FWD_REL,
                ),
                rng.seed,
            );
        }
    }
}

fn transpose(v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
        .collect()
}

/// The column sums are bitwise reproducible: two runs give the same bits.
fn deterministic_column_sums<T: Element, B: Backend>(b: &B) {
    let mut rng = Rng::new();
    let (rows, cols) = (300, 256);
    let op = Normalize::new(Eps::Clamp(1e-8)).groups(64);
    let x: Mat<T> = random_mat(&mut rng, rows, cols, 0, 0);
    let dy: Mat<T> = random_mat(&mut rng, rows, cols, 0, 0);
    let s: Vec<T> = random_vec(&mut rng, cols, 0.5, 2.0);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut dx = Mat::<T>::poisoned(rows, cols, cols, 0);
        let mut ds = vec![T::from_f64(f64::NAN); cols];
        b.norm_bwd(&op, &x, Some(&s), &dy, &mut dx, Some(&mut ds))
            .unwrap();
        runs.push(widened(&ds).iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
    assert_eq!(
        runs[0], runs[1],
        "dscale differs between two identical runs"
    );
}

// ---- the tests ------------------------------------------------------------------------------

/// Each case runs twice: on the CPU emulator (`emu_cases::<name>`, with the `emulator` feature)
/// and on the GPU (`gpu_cases::<name>`, skipped visibly without a device).
macro_rules! on_every_backend {
    ($($name:ident($b:ident) $body:block)*) => {
        #[cfg(feature = "emulator")]
        mod emu_cases {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let $b = &emu_backend::Emu(spherekit::emulator::Emulator::new(3));
                    $body
                }
            )*
        }

        mod gpu_cases {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let Some(device) = device(concat!("gpu_cases::", stringify!($name))) else {
                        return;
                    };
                    let $b = &device;
                    $body
                }
            )*
        }
    };
}

fn device(test: &str) -> Option<Device> {
    gpu(test).map(|(gpu, stream)| Device { gpu, stream })
}

// A small emulated device (3 SMs): persistent grids of a few blocks, so workers loop.
on_every_backend! {
    normalize_every_tier(b) {
        normalize_all_tiers::<f32, _>(b);
        normalize_all_tiers::<f16, _>(b);
        normalize_all_tiers::<bf16, _>(b);
    }
    normalize_groups_strides_misalignment(b) {
        normalize_layouts::<f32, _>(b);
        normalize_layouts::<f16, _>(b);
        normalize_layouts::<bf16, _>(b);
    }
    normalize_extreme_rows(b) {
        normalize_extremes::<f32, _>(b, 1, 300);
        normalize_extremes::<f16, _>(b, 1, 300);
        normalize_extremes::<bf16, _>(b, 1, 300);
    }
    lerp_every_tier(b) {
        lerp_all_tiers::<f32, _>(b);
        lerp_all_tiers::<f16, _>(b);
        lerp_all_tiers::<bf16, _>(b);
    }
    projection_rows_and_columns(b) {
        projection_case::<f32, _>(b);
        projection_case::<f16, _>(b);
        projection_case::<bf16, _>(b);
    }
    column_sums_are_reproducible(b) {
        deterministic_column_sums::<f32, _>(b);
        deterministic_column_sums::<bf16, _>(b);
    }
}

#[cfg(feature = "emulator")]
mod emulator_only {
    use super::emu_backend::Emu;
    use super::*;
    use spherekit::emulator::Emulator;

    #[test]
    fn every_kernel_the_crate_launches_is_compiled() {
        let compiled = Emulator::kernel_names();
        for name in spherekit::kernel_names() {
            assert!(
                compiled.contains(&name),
                "kernel {name} is not in the kernel sources"
            );
        }
        assert_eq!(
            compiled.len(),
            spherekit::kernel_names().len(),
            "kernels compiled but never launched"
        );
    }

    #[test]
    fn workers_loop_over_segments_and_groups() {
        // One emulated SM: a small persistent grid, so every worker visits many segments, and
        // with 3 groups per row the worker count is not a multiple of the groups (the cursor
        // wraps from one row into the next).
        let emu1 = Emu(Emulator::new(1));
        let mut rng = Rng::new();
        for (rows, cols, group) in [(4000, 48, 16), (1500, 3 * 24, 24), (700, 21, 7)] {
            let op = Normalize::new(Eps::Clamp(1e-8)).groups(group);
            normalize_case::<f32, _>(&emu1, &mut rng, &op, rows, cols, 0, 0, true);
            normalize_case::<bf16, _>(&emu1, &mut rng, &op, rows, cols, 0, 0, false);
            normalize_bwd_case::<f32, _>(&emu1, &mut rng, &op, rows, cols, 0, 0, true);
            normalize_bwd_case::<bf16, _>(&emu1, &mut rng, &op, rows, cols, 0, 0, true);
            normalize_bwd_case::<f16, _>(&emu1, &mut rng, &op, rows, cols, 0, 0, false);
        }
        // 16-bit register tiers load a worker's next segment before finishing the current one;
        // rows that need the f64 retry sit between ordinary ones here, so some retries happen
        // with the next segment's loads in flight.
        normalize_extremes::<bf16, _>(&emu1, 40, 296);
        normalize_extremes::<f16, _>(&emu1, 40, 300);
        normalize_extremes::<f16, _>(&emu1, 40, 296);
        lerp_case::<f32, _>(
            &emu1,
            &mut rng,
            &LerpNormalize::ngpt(0.05),
            3000,
            64,
            0,
            0,
            false,
            false,
        );
        for backward in [false, true] {
            lerp_case::<bf16, _>(
                &emu1,
                &mut rng,
                &LerpNormalize::simbav2(),
                3000,
                64,
                0,
                0,
                true,
                backward,
            );
            lerp_case::<f16, _>(
                &emu1,
                &mut rng,
                &LerpNormalize::ngpt(0.05),
                1000,
                64,
                0,
                0,
                false,
                backward,
            );
        }
    }

    #[test]
    fn streaming_rows_staged_in_part_or_not_at_all() {
        // The streaming tier copies the first `stage` elements of each input to shared memory
        // and re-reads the rest: with small budgets rows are staged partly (or not at all), and
        // the results must not change.
        let mut rng = Rng::new();
        for budget in [0, 12_000, 30_000] {
            let b = &Emu(Emulator::new(2).with_stream_smem(budget));
            for (i, eps) in EPS_MODES.iter().enumerate() {
                let op = Normalize::new(*eps).with_tier(Tier::Stream);
                normalize_case::<f32, _>(b, &mut rng, &op, 3, 2000 + 4 * i, 0, 0, i % 2 == 0);
                normalize_case::<bf16, _>(b, &mut rng, &op, 3, 1999, 0, 0, true);
                normalize_bwd_case::<f16, _>(b, &mut rng, &op, 3, 2048, 8, 0, true);
                normalize_bwd_case::<f32, _>(b, &mut rng, &op, 2, 1001, 0, 0, i % 2 == 1);
                let lerp = lerp_ops(Tier::Stream, i);
                lerp_case::<bf16, _>(b, &mut rng, &lerp, 3, 1600, 0, 0, i == 1, false);
                lerp_case::<f32, _>(b, &mut rng, &lerp, 3, 1203, 0, 0, i == 2, true);
            }
        }
    }

    #[test]
    fn streaming_workers_loop_over_rows() {
        // One emulated SM: a grid holds at most 8 waves of 8 blocks (one wave for a backward
        // pass with per-worker column partials: lerp with a scalar p), so with these row counts
        // workers take two rows or more, and the next row's staging, started during a row's
        // last pass, is used. Rows staged whole and in part, vector and scalar rows, every op,
        // column sums by column pass (dscale, dp per channel) and by partials (scalar p).
        let mut rng = Rng::new();
        for budget in [30_000, 227 * 1024] {
            let b = &Emu(Emulator::new(1).with_stream_smem(budget));
            for (i, backward) in [(0, false), (1, true), (2, false), (3, true)] {
                let rows = 150;
                let lerp = lerp_ops(Tier::Stream, i);
                lerp_case::<bf16, _>(b, &mut rng, &lerp, rows, 1600, 0, 0, i == 2, backward);
                lerp_case::<f32, _>(b, &mut rng, &lerp, rows, 1203, 0, 0, i == 3, backward);
                lerp_case::<f16, _>(b, &mut rng, &lerp, rows, 1024, 8, 0, i == 1, backward);
                let op = Normalize::new(EPS_MODES[i]).with_tier(Tier::Stream);
                if backward {
                    normalize_bwd_case::<f16, _>(b, &mut rng, &op, rows, 1024, 8, 0, i == 1);
                    normalize_bwd_case::<f32, _>(b, &mut rng, &op, rows, 1203, 0, 0, i == 3);
                } else {
                    normalize_case::<bf16, _>(b, &mut rng, &op, rows, 2000, 0, 0, i == 0);
                    normalize_case::<f32, _>(b, &mut rng, &op, rows, 1203, 0, 0, i == 2);
                }
            }
        }
    }

    #[test]
    fn lerp_dp_column_pass_covers_chunks_slabs_and_f64_rows() {
        // On the streaming tier dp per channel comes from a column pass (lerp_dp_columns): rows
        // in chunks (the last one short), columns in slabs of 256 threads (the last one
        // partial), vector and scalar access, and rows whose f32 sums leave f32's range (h
        // scaled by 1e30, so the row pass retries them in f64 and the column pass takes its f64
        // branch) between ordinary rows. Their dy is scaled too, so that their terms dominate
        // dp and the check sees them.
        let mut rng = Rng::new();
        let b = &Emu(Emulator::new(3));
        for (i, (rows, cols)) in [(97, 2056), (40, 1031), (61, 3 * 8 * 100)]
            .into_iter()
            .enumerate()
        {
            let op = lerp_ops(Tier::Stream, i);
            lerp_case::<f32, _>(b, &mut rng, &op, rows, cols, 0, 0, false, true);
            lerp_case::<bf16, _>(b, &mut rng, &op, rows, cols, 8, 0, false, true);
            lerp_case::<f16, _>(b, &mut rng, &op, rows, cols, 0, 0, false, true);
            let h0: Mat<f32> = random_mat(&mut rng, rows, cols, 0, 0);
            let u: Mat<f32> = random_mat(&mut rng, rows, cols, 0, 0);
            let dy0: Mat<f32> = random_mat(&mut rng, rows, cols, 0, 0);
            let big = |r: usize| if r % 5 == 2 { 1e30 } else { 1.0 };
            let hf = h0.to_f64();
            let dyf = dy0.to_f64();
            let h = Mat::<f32>::from_fn(rows, cols, cols, 0, |r, c| hf[r * cols + c] * big(r));
            let dy = Mat::<f32>::from_fn(rows, cols, cols, 0, |r, c| dyf[r * cols + c] * big(r));
            let p: Vec<f32> = random_vec(&mut rng, cols, -1.5, 1.5);
            let what = format!("lerp dp column pass, f64 rows, {rows}x{cols} {op:?}");
            lerp_bwd_check::<f32, _>(b, &mut rng, &op, &h, &u, &p, &dy, &what);
        }
    }

    #[test]
    fn normalize_dscale_column_pass_covers_chunks_slabs_groups_and_f64_rows() {
        // On the streaming tier dscale comes from a column pass (norm_ds_columns): rows in
        // chunks (the last one short), columns in slabs of 256 threads (the last one partial),
        // groups that start inside a slab, vector and scalar access. Rows of norm 1e-41 (f32
        // subnormals) sit between ordinary ones: the row pass retries them in f64, and their
        // r = 1e41 exists only in f64, so a column pass that took its f32 branch for them
        // would sum infinities; their dy is scaled up so that their terms weigh in dscale.
        let mut rng = Rng::new();
        let b = &Emu(Emulator::new(3));
        for (i, (rows, cols, group)) in [
            (97, 2056, None),
            (40, 1031, None),
            (61, 2400, Some(600)),
            (50, 2100, Some(700)),
        ]
        .into_iter()
        .enumerate()
        {
            let mut op = Normalize::new(EPS_MODES[i]).with_tier(Tier::Stream);
            if let Some(g) = group {
                op = op.groups(g);
            }
            normalize_bwd_case::<f32, _>(b, &mut rng, &op, rows, cols, 0, 0, true);
            normalize_bwd_case::<bf16, _>(b, &mut rng, &op, rows, cols, 8, 0, true);
            normalize_bwd_case::<f16, _>(b, &mut rng, &op, rows, cols, 0, 0, true);
            let op = Normalize {
                eps: Eps::None,
                ..op
            };
            let x0 = random_mat::<f32>(&mut rng, rows, cols, 0, 0).to_f64();
            let dy0 = random_mat::<f32>(&mut rng, rows, cols, 0, 0).to_f64();
            let seg = group.unwrap_or(cols);
            let tiny = |r: usize| r % 5 == 2;
            let x = Mat::<f32>::from_fn(rows, cols, cols, 0, |r, c| {
                let v = x0[r * cols + c];
                if tiny(r) {
                    let k = r * cols + c / seg * seg;
                    v * 1e-41 / cpu::norm2(&x0[k..k + seg])
                } else {
                    v
                }
            });
            let dy = Mat::<f32>::from_fn(rows, cols, cols, 0, |r, c| {
                dy0[r * cols + c] * if tiny(r) { 100.0 } else { 1.0 }
            });
            let s: Vec<f32> = random_vec(&mut rng, cols, 0.5, 2.0);
            let what = format!("dscale column pass, f64 rows, {rows}x{cols} {op:?}");
            normalize_bwd_check::<f32, _>(b, &mut rng, &op, &x, Some(&s), &dy, &what);
        }
    }

    #[test]
    fn column_sums_of_many_workers_reduce_in_slices() {
        // Thousands of short rows on 64 emulated SMs: thousands of workers, whose partial sums
        // are reduced in two launches (slices, then their total).
        let mut rng = Rng::new();
        let b = &Emu(Emulator::new(64));
        let op = Normalize::new(Eps::Clamp(1e-6));
        normalize_bwd_case::<f32, _>(b, &mut rng, &op, 6000, 8, 0, 0, true);
        normalize_bwd_case::<bf16, _>(b, &mut rng, &op.groups(8), 3000, 16, 0, 0, true);
        let lerp = LerpNormalize::ngpt(0.3);
        lerp_case::<f32, _>(b, &mut rng, &lerp, 6000, 8, 0, 0, false, true);
        lerp_case::<f16, _>(b, &mut rng, &lerp, 6000, 8, 0, 0, true, true);
    }

    #[test]
    fn column_sums_do_not_depend_on_the_grid() {
        // Different SM counts give different persistent grids; the sums agree to rounding.
        let mut rng = Rng::new();
        let (rows, cols) = (200, 96);
        let op = Normalize::new(Eps::None).groups(32);
        let x: Mat<f32> = random_mat(&mut rng, rows, cols, 0, 0);
        let dy: Mat<f32> = random_mat(&mut rng, rows, cols, 0, 0);
        let s: Vec<f32> = random_vec(&mut rng, cols, 0.5, 2.0);
        let mut sums = Vec::new();
        for sms in [1, 5, 64] {
            let mut dx = Mat::<f32>::poisoned(rows, cols, cols, 0);
            let mut ds = vec![f32::NAN; cols];
            Emu(Emulator::new(sms))
                .norm_bwd(&op, &x, Some(&s), &dy, &mut dx, Some(&mut ds))
                .unwrap();
            sums.push(widened(&ds));
        }
        for other in &sums[1..] {
            for (a, b) in sums[0].iter().zip(other) {
                assert!(
                    (a - b).abs() <= 1e-6 * (a.abs() + 1.0),
                    "{a} vs {b} (seed {})",
                    rng.seed
                );
            }
        }
    }
}

#[test]
fn gpu_large_rows_at_the_stated_limit() {
    // D = 262144 (the "at least"), bf16, through the automatic tier choice.
    let Some(d) = device("gpu_large_rows_at_the_stated_limit") else {
        return;
    };
    let mut rng = Rng::new();
    for op in [Normalize::new(Eps::Clamp(1e-8)), Normalize::new(Eps::None)] {
        normalize_case::<bf16, _>(&d, &mut rng, &op, 3, 262_144, 0, 0, true);
        normalize_bwd_case::<bf16, _>(&d, &mut rng, &op, 3, 262_144, 0, 0, true);
    }
    lerp_case::<f32, _>(
        &d,
        &mut rng,
        &LerpNormalize::ngpt(0.05),
        2,
        262_144,
        0,
        0,
        false,
        true,
    );
}

#[test]
fn gpu_errors_are_values_not_panics() {
    let Some(d) = device("gpu_errors_are_values_not_panics") else {
        return;
    };
    let x = d.stream.clone_htod(&[1.0f32; 64]).unwrap();
    let mut y = d.stream.clone_htod(&[0.0f32; 64]).unwrap();
    // Shapes that disagree.
    let xr = Rows::new(x.slice(..), 8, 8).unwrap();
    let mut yr = RowsMut::new(y.slice_mut(..), 4, 8).unwrap();
    let err = Normalize::new(Eps::None)
        .forward(&d.gpu, &d.stream, &xr, None, &mut yr)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidShape(_)), "{err}");
    // A view too short for its shape.
    assert!(matches!(
        Rows::new(x.slice(..60), 8, 8),
        Err(Error::BufferTooSmall { .. })
    ));
    // A stream of another context is refused before anything is enqueued.
    assert!(d.gpu.context().cu_ctx() == d.stream.context().cu_ctx());
}

// ---- bad input (CPU only: the emulator shares the GPU path's planning) --------------------

#[cfg(feature = "emulator")]
mod bad_input {
    use super::*;
    use spherekit::emulator::{Emulator, HostRows, HostRowsMut};

    fn emu() -> Emulator {
        Emulator::new(2)
    }

    #[test]
    fn matrices_are_validated_when_built() {
        let v = vec![0f32; 100];
        assert!(matches!(
            HostRows::new(&v, 0, 10, 10),
            Err(Error::InvalidShape(_))
        ));
        assert!(matches!(
            HostRows::new(&v, 10, 0, 10),
            Err(Error::InvalidShape(_))
        ));
        assert!(matches!(
            HostRows::new(&v, 10, 10, 9),
            Err(Error::InvalidStride { .. })
        ));
        assert!(matches!(
            HostRows::new(&v, 11, 10, 10),
            Err(Error::BufferTooSmall { needed: 110, .. })
        ));
        assert!(HostRows::new(&v, 10, 10, 10).is_ok());
        // (rows - 1) * stride overflows: an error, not a panic or a wrapped length.
        assert!(matches!(
            HostRows::new(&v, usize::MAX / 2, 10, 10),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn normalize_rejects_bad_arguments() {
        let x = vec![1f32; 64];
        let mut y = vec![0f32; 64];
        let xr = HostRows::new(&x, 8, 8, 8).unwrap();
        let emu = emu();
        let run = |op: Normalize, s: Option<&[f32]>, rows: usize| {
            let mut y2 = y.clone();
            let mut yr = HostRowsMut::new(&mut y2, rows, 8, 8).unwrap();
            op.forward_emulated(&emu, &xr, s, &mut yr)
        };
        assert!(matches!(
            run(Normalize::new(Eps::None), None, 4),
            Err(Error::InvalidShape(_))
        ));
        assert!(matches!(
            run(Normalize::new(Eps::None).groups(3), None, 8),
            Err(Error::InvalidShape(_))
        ));
        assert!(matches!(
            run(Normalize::new(Eps::None).groups(0), None, 8),
            Err(Error::InvalidShape(_))
        ));
        assert!(matches!(
            run(Normalize::new(Eps::None), Some(&[1.0; 7]), 8),
            Err(Error::InvalidShape(_))
        ));
        for eps in [
            Eps::Clamp(-1.0),
            Eps::Add(f32::NAN),
            Eps::Inside(f32::INFINITY),
            Eps::Clamp(1e31),
        ] {
            assert!(
                matches!(
                    run(Normalize::new(eps), None, 8),
                    Err(Error::InvalidParameter { .. })
                ),
                "{eps:?}"
            );
        }
        assert!(matches!(
            run(Normalize::new(Eps::None).with_tier(Tier::Team(3)), None, 8),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            run(Normalize::new(Eps::None).with_tier(Tier::Team(2)), None, 8),
            Ok(())
        ));
        // dscale without a scale.
        let mut dx = vec![0f32; 64];
        let mut ds = vec![0f32; 8];
        let err = Normalize::new(Eps::None)
            .backward_emulated(
                &emu,
                &xr,
                None,
                &xr,
                &mut HostRowsMut::new(&mut dx, 8, 8, 8).unwrap(),
                Some(&mut ds),
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidShape(_)), "{err}");
        // A tier too small for the row: 2 threads hold at most 2 * 32 elements.
        let big = vec![1f32; 200];
        let mut out = vec![0f32; 200];
        let err = Normalize::new(Eps::None)
            .with_tier(Tier::Team(2))
            .forward_emulated(
                &emu,
                &HostRows::new(&big, 1, 200, 200).unwrap(),
                None,
                &mut HostRowsMut::new(&mut out, 1, 200, 200).unwrap(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
        y[0] = 1.0;
    }

    #[test]
    fn lerp_rejects_bad_arguments() {
        let h = vec![1f32; 64];
        let hr = HostRows::new(&h, 8, 8, 8).unwrap();
        let emu = emu();
        let mut y = vec![0f32; 64];
        let op = LerpNormalize::ngpt(0.05);
        let err = op
            .forward_emulated(
                &emu,
                &hr,
                &hr,
                &[1.0; 3],
                &mut HostRowsMut::new(&mut y, 8, 8, 8).unwrap(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidShape(_)), "{err}");
        let bad_c = LerpNormalize { c: f32::NAN, ..op };
        let err = bad_c
            .forward_emulated(
                &emu,
                &hr,
                &hr,
                &[1.0],
                &mut HostRowsMut::new(&mut y, 8, 8, 8).unwrap(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
        let (mut dh, mut du, mut dp) = (vec![0f32; 64], vec![0f32; 64], vec![0f32; 2]);
        let err = op
            .backward_emulated(
                &emu,
                &hr,
                &hr,
                &[1.0],
                &hr,
                &mut HostRowsMut::new(&mut dh, 8, 8, 8).unwrap(),
                &mut HostRowsMut::new(&mut du, 8, 8, 8).unwrap(),
                Some(&mut dp),
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidShape(_)), "{err}");
    }

    #[test]
    fn projection_rejects_bad_arguments() {
        let emu = emu();
        let err = Projection::new(Eps::None)
            .project_many_emulated::<f32>(&emu, &mut [])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidShape(_)), "{err}");
        let mut w = vec![1f32; 16];
        let mut wr = HostRowsMut::new(&mut w, 4, 4, 4).unwrap();
        let err = Projection::new(Eps::Add(-1.0))
            .project_many_emulated(&emu, &mut [(&mut wr, Axis::Rows)])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    }

    #[test]
    fn infinite_entry_gives_nan_there_and_zero_elsewhere_in_its_row() {
        // x / ||x|| with one infinite entry: inf / inf = NaN there, finite / inf = 0 elsewhere;
        // the backward is NaN across the row. Other rows are untouched.
        let emu = emu();
        let cols = 64;
        let mut x = vec![0.25f32; 2 * cols];
        x[cols + 3] = f32::INFINITY;
        for eps in EPS_MODES {
            for tier in [Tier::Auto, Tier::Stream] {
                let op = Normalize::new(eps).with_tier(tier);
                let xr = HostRows::new(&x, 2, cols, cols).unwrap();
                let mut y = vec![f32::NAN; 2 * cols];
                op.forward_emulated(
                    &emu,
                    &xr,
                    None,
                    &mut HostRowsMut::new(&mut y, 2, cols, cols).unwrap(),
                )
                .unwrap();
                assert!(
                    (y[0] - 0.125).abs() < 1e-6,
                    "{op:?}: the finite row is normalized: {}",
                    y[0]
                );
                for (c, v) in y[cols..].iter().enumerate() {
                    if c == 3 {
                        assert!(v.is_nan(), "{op:?}: inf / inf is NaN");
                    } else {
                        assert_eq!(*v, 0.0, "{op:?}: finite / inf is 0 (entry {c})");
                    }
                }
                let mut dx = vec![0f32; 2 * cols];
                op.backward_emulated(
                    &emu,
                    &xr,
                    None,
                    &xr,
                    &mut HostRowsMut::new(&mut dx, 2, cols, cols).unwrap(),
                    None,
                )
                .unwrap();
                assert!(
                    dx[cols..].iter().all(|v| v.is_nan()),
                    "{op:?}: the backward of the inf row is NaN"
                );
                assert!(
                    dx[..cols].iter().all(|v| v.is_finite()),
                    "{op:?}: the other row is finite"
                );
            }
        }
    }

    #[test]
    fn nan_row_affects_only_its_row() {
        let emu = emu();
        let cols = 40;
        let mut x = vec![0.5f32; 3 * cols];
        x[cols + 7] = f32::NAN;
        let mut y = vec![0f32; 3 * cols];
        Normalize::new(Eps::Clamp(1e-8))
            .forward_emulated(
                &emu,
                &HostRows::new(&x, 3, cols, cols).unwrap(),
                None,
                &mut HostRowsMut::new(&mut y, 3, cols, cols).unwrap(),
            )
            .unwrap();
        assert!(
            y[cols..2 * cols].iter().all(|v| v.is_nan()),
            "the NaN row is NaN"
        );
        let expect = 1.0 / (cols as f32).sqrt();
        for v in y[..cols].iter().chain(&y[2 * cols..]) {
            assert!((v - expect).abs() < 1e-6, "other rows are untouched: {v}");
        }
    }
}
