//! Simplex random features, CPU reference: the projections' exact properties, the estimators'
//! unbiasedness and MSE against the exact formula by z-tests over many independent draws, the
//! bias of a rotation without the QR sign fix, FAVOR+ against exact softmax attention, and
//! gradients against finite differences. Seeds are fresh each run (printed on failure;
//! SPHEREKIT_SEED reproduces).

mod common;

use common::Rng;
use spherekit::simplex::cpu::{
    estimate, estimate_pairs, exact_mse, favor_attention, favor_attention_backward, features,
    features_backward, softmax_attention,
};
use spherekit::simplex::projection::{
    Stream, full_simplex_directions, haar_orthogonal, simplex_directions,
};
use spherekit::simplex::{
    AttentionShape, Coupling, Favor, FeatureMap, KernelKind, Projection, ProjectionSpec, Redraw,
    Rotation, SignFix, Stabilizer,
};

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// x = r₁ e₁ and y = r₂ (cos t e₁ + sin t e₂) in R^d.
fn pair(d: usize, r1: f64, r2: f64, t: f64) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; d];
    let mut y = vec![0.0; d];
    x[0] = r1;
    y[0] = r2 * t.cos();
    y[1] = r2 * t.sin();
    (x, y)
}

// ---- exact formula ---------------------------------------------------------------------------

#[test]
fn exact_mse_reproduces_the_published_table() {
    // (d, m, x, y, iid, ORF, SimRF) from the background note (Reid et al. 2023's formula).
    let e = |d: usize, i: usize, s: f64| {
        let mut v = vec![0.0; d];
        v[i] = s;
        v
    };
    let mut y2 = e(8, 0, 0.42);
    y2[1] = 0.5;
    let cases = [
        (
            8,
            8,
            e(8, 0, 0.3),
            e(8, 1, 0.3),
            [0.0246522, 0.0232768, 0.0027564],
        ),
        (8, 8, e(8, 0, 0.6), y2, [0.545067, 0.448481, 0.252048]),
        (
            64,
            64,
            e(64, 0, 0.5),
            e(64, 1, 0.5),
            [0.0101363, 0.0083005, 0.00065013],
        ),
        (
            64,
            64,
            e(64, 0, 1.0),
            e(64, 1, 1.0),
            [0.099829, 0.0720273, 0.0431743],
        ),
        (
            128,
            128,
            e(128, 0, 0.5),
            e(128, 1, 0.5),
            [0.00506813, 0.00412171, 0.00025669],
        ),
    ];
    for (d, m, x, y, want) in cases {
        for (c, want) in [Coupling::Iid, Coupling::Orthogonal, Coupling::Simplex]
            .into_iter()
            .zip(want)
        {
            let got = exact_mse(KernelKind::Softmax, c, m, &x, &y).unwrap();
            let rel = (got - want).abs() / want;
            // The table has 6 significant digits.
            assert!(rel < 2e-5, "d={d} {c:?}: {got} vs {want} ({rel:.1e})");
        }
    }
}

#[test]
fn exact_mse_orders_simplex_below_orthogonal_below_iid_and_full_simplex_lowest() {
    for d in [8, 32, 64] {
        for r in [0.3, 0.6, 1.0] {
            let (x, y) = pair(d, r, r, 1.1);
            let mse = |c, m| exact_mse(KernelKind::Softmax, c, m, &x, &y).unwrap();
            let m = 2 * d;
            let (iid, orf, sim) = (
                mse(Coupling::Iid, m),
                mse(Coupling::Orthogonal, m),
                mse(Coupling::Simplex, m),
            );
            assert!(sim < orf && orf < iid, "d={d} r={r}: {sim} {orf} {iid}");
            // The full simplex (d + 1 per block, cosine −1/d) against the simplex at equal m
            // with whole blocks of both (m = d(d + 1)): the evidence for offering it. A
            // truncated last block loses the exact cancellation Σ s_i = 0, so at m = 2d the
            // full simplex is worse: it pays only when m is a multiple of d + 1.
            let mw = d * (d + 1);
            let (full, sim_w) = (mse(Coupling::FullSimplex, mw), mse(Coupling::Simplex, mw));
            assert!(
                full < sim_w,
                "d={d} r={r}: full {full} vs simplex {sim_w} at m={mw}"
            );
            let f = |v: f64| v * m as f64;
            eprintln!(
                "d={d} |x|=|y|={r}: m*MSE at m={m}: iid {:.4e} ORF {:.4e} SimRF {:.4e} full {:.4e}; \
                 at m={mw}: full/SimRF - 1 = {:+.2}%",
                f(iid),
                f(orf),
                f(sim),
                f(mse(Coupling::FullSimplex, m)),
                100.0 * (full / sim_w - 1.0)
            );
        }
    }
    // The Gaussian kernel has the same structure (C changes, the ratios do not).
    let (x, y) = pair(16, 0.5, 0.4, 0.7);
    let g = |c| exact_mse(KernelKind::Gaussian, c, 32, &x, &y).unwrap();
    assert!(g(Coupling::Simplex) < g(Coupling::Orthogonal));
    assert!(g(Coupling::Orthogonal) < g(Coupling::Iid));
}

// ---- projections -----------------------------------------------------------------------------

#[test]
fn simplex_directions_are_unit_with_the_simplex_cosines_and_sum_to_zero() {
    for d in [2, 3, 8, 33, 64] {
        let s = simplex_directions(d);
        let f = full_simplex_directions(d);
        for (dirs, n, cos) in [
            (&s, d, -1.0 / (d as f64 - 1.0)),
            (&f, d + 1, -1.0 / d as f64),
        ] {
            for i in 0..n {
                let si = &dirs[i * d..(i + 1) * d];
                assert!((dot(si, si) - 1.0).abs() < 1e-14, "d={d}: |s_{i}|");
                for j in 0..i {
                    let c = dot(si, &dirs[j * d..(j + 1) * d]);
                    assert!((c - cos).abs() < 1e-14, "d={d}: s_{i}.s_{j} = {c}");
                }
            }
            for k in 0..d {
                let sum: f64 = (0..n).map(|i| dirs[i * d + k]).sum();
                assert!(sum.abs() < 1e-13, "d={d}: coordinate {k} sums to {sum}");
            }
        }
    }
}

/// The Gram matrix of a block's rows divided by their norms.
fn block_cosines(w: &Projection, start: usize, rows: usize) -> Vec<f64> {
    let unit: Vec<Vec<f64>> = (start..start + rows)
        .map(|i| {
            let r = w.row(i);
            let n = dot(r, r).sqrt();
            r.iter().map(|v| v / n).collect()
        })
        .collect();
    let mut g = vec![0.0; rows * rows];
    for i in 0..rows {
        for j in 0..rows {
            g[i * rows + j] = dot(&unit[i], &unit[j]);
        }
    }
    g
}

#[test]
fn blocks_have_their_couplings_geometry_under_both_rotations() {
    for rotation in [Rotation::Haar, Rotation::Hadamard] {
        for (coupling, extra, cos) in [
            (Coupling::Orthogonal, 0, 0.0),
            (Coupling::Simplex, 0, -1.0 / 15.0),
            (Coupling::FullSimplex, 1, -1.0 / 16.0),
        ] {
            let d = 16;
            let spec = ProjectionSpec::new(coupling, 3 * (d + extra) - 5, d, 7)
                .unwrap()
                .with_rotation(rotation)
                .unwrap();
            let w = spec.draw(3);
            assert_eq!(w.w.len(), w.features * d);
            let b = d + extra;
            for start in (0..w.features).step_by(b) {
                let rows = b.min(w.features - start);
                let g = block_cosines(&w, start, rows);
                for i in 0..rows {
                    for j in 0..rows {
                        let want = if i == j { 1.0 } else { cos };
                        assert!(
                            (g[i * rows + j] - want).abs() < 1e-12,
                            "{coupling:?} {rotation:?} block at {start}: cos({i},{j}) = {}",
                            g[i * rows + j]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn draws_are_reproducible_extend_with_m_and_change_with_step_and_seed() {
    for coupling in [
        Coupling::Iid,
        Coupling::Orthogonal,
        Coupling::Simplex,
        Coupling::SimplexPlus,
        Coupling::FullSimplex,
    ] {
        let spec = ProjectionSpec::new(coupling, 40, 8, 11).unwrap();
        let a = spec.draw(5);
        assert_eq!(a, spec.draw(5), "{coupling:?}: same seed and step");
        let bigger = ProjectionSpec {
            features: 100,
            ..spec
        }
        .draw(5);
        assert_eq!(a.w[..], bigger.w[..a.w.len()], "{coupling:?}: growing m");
        assert_ne!(a, spec.draw(6), "{coupling:?}: another step");
        assert_ne!(
            a,
            ProjectionSpec { seed: 12, ..spec }.draw(5),
            "{coupling:?}"
        );
        assert!(a.w.iter().all(|v| v.is_finite()));
    }
    let redraw = Redraw::new(
        ProjectionSpec::new(Coupling::Simplex, 16, 8, 1).unwrap(),
        100,
    )
    .unwrap();
    assert_eq!(redraw.projection(0), redraw.projection(99));
    assert_ne!(redraw.projection(99), redraw.projection(100));
    assert!(redraw.is_redraw_step(200) && !redraw.is_redraw_step(201));
    assert_eq!(redraw.projection(250), redraw.spec.draw(2));
}

#[test]
fn simplex_plus_lowers_the_weighted_direction_sum() {
    // SimRF+ minimizes |Σ n_i s_i|² over the directions for the drawn norms; the plain simplex
    // only zeroes Σ s_i. Recover the block's directions and norms from W and compare.
    let d = 12;
    for seed in 0..20 {
        let plus = ProjectionSpec::new(Coupling::SimplexPlus, d, d, seed)
            .unwrap()
            .draw(0);
        let plain = ProjectionSpec::new(Coupling::Simplex, d, d, seed)
            .unwrap()
            .draw(0);
        let weighted = |w: &Projection| -> f64 {
            let mut sum = vec![0.0; d];
            (0..d).for_each(|i| sum.iter_mut().zip(w.row(i)).for_each(|(s, v)| *s += v));
            dot(&sum, &sum)
        };
        // Same stream: same norms and rotation, so only the directions differ.
        for i in 0..d {
            let (a, b) = (plus.row(i), plain.row(i));
            assert!(
                (dot(a, a) - dot(b, b)).abs() < 1e-9 * dot(b, b),
                "norms differ"
            );
        }
        assert!(
            weighted(&plus) < weighted(&plain),
            "seed {seed}: {} vs {}",
            weighted(&plus),
            weighted(&plain)
        );
    }
}

#[test]
fn haar_rotation_is_orthogonal_with_and_without_the_sign_fix() {
    for fix in [SignFix::Applied, SignFix::Omitted] {
        let d = 9;
        let q = haar_orthogonal(&mut Stream::new(1, 2, 3), d, fix);
        for i in 0..d {
            for j in 0..d {
                let c = dot(&q[i * d..(i + 1) * d], &q[j * d..(j + 1) * d]);
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((c - want).abs() < 1e-13, "{fix:?}: {c}");
            }
        }
    }
}

#[test]
fn bad_specs_and_maps_are_errors() {
    assert!(ProjectionSpec::new(Coupling::Iid, 0, 8, 0).is_err());
    assert!(ProjectionSpec::new(Coupling::Iid, 8, 0, 0).is_err());
    assert!(ProjectionSpec::new(Coupling::Simplex, 8, 1, 0).is_err());
    let spec = ProjectionSpec::new(Coupling::Orthogonal, 8, 12, 0).unwrap();
    assert!(spec.with_rotation(Rotation::Hadamard).is_err());
    assert!(Redraw::new(spec, 0).is_err());
    let w = spec.draw(0);
    let x = vec![0.1; 24];
    let mut map = FeatureMap::unbiased(KernelKind::Softmax);
    assert!(features(&map, &w, &x[..23], 2).is_err(), "length");
    map.eps = -1.0;
    assert!(features(&map, &w, &x, 2).is_err(), "eps");
    map.eps = 0.0;
    map.input_scale = f64::NAN;
    assert!(features(&map, &w, &x, 2).is_err(), "scale");
    map.input_scale = 1.0;
    map.stabilizer = Stabilizer::Group { rows: 3 };
    assert!(features(&map, &w, &x, 2).is_err(), "group");
    let shape = AttentionShape {
        heads: 1,
        len: 0,
        dim: 12,
        value_dim: 4,
    };
    let opts = Favor {
        input_scale: 1.0,
        eps: 0.0,
        guard: 0.0,
        causal: false,
    };
    assert!(
        favor_attention(&opts, &shape, &w, &[], &[], &[]).is_err(),
        "zero length"
    );
    let shape = AttentionShape {
        len: 2,
        dim: 8,
        ..shape
    };
    let q = vec![0.0; 16];
    assert!(
        favor_attention(&opts, &shape, &w, &q, &q, &[0.0; 8]).is_err(),
        "dim mismatch"
    );
}

// ---- statistics --------------------------------------------------------------------------------

/// Draws `n` independent estimates K̂(x, y) from `draw(i)`, on every core.
fn sample(n: usize, draw: impl Fn(u64) -> f64 + Sync) -> Vec<f64> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let chunk = n.div_ceil(threads);
    let draw = &draw;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(n))
                        .map(|i| draw(i as u64))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// (z of the mean against k, z of the mean squared error against mse, empirical MSE).
fn z_scores(est: &[f64], k: f64, mse: f64) -> (f64, f64, f64) {
    let n = est.len() as f64;
    let mean = est.iter().sum::<f64>() / n;
    let var = est.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sq: Vec<f64> = est.iter().map(|e| (e - k).powi(2)).collect();
    let msq = sq.iter().sum::<f64>() / n;
    let var_sq = sq.iter().map(|e| (e - msq).powi(2)).sum::<f64>() / (n - 1.0);
    (
        (mean - k) / (var / n).sqrt(),
        (msq - mse) / (var_sq / n).sqrt(),
        msq,
    )
}

#[test]
fn estimators_are_unbiased_with_the_exact_mse() {
    let base = common::seed();
    // (d, m, |x|, |y|, angle, draws): the note's Monte Carlo point, a truncated last block,
    // the Gaussian kernel, and d = 64.
    let cases = [
        (KernelKind::Softmax, 8, 16, 0.6, 0.7, 1.0, 100_000),
        (KernelKind::Softmax, 8, 13, 0.5, 0.5, 2.0, 100_000),
        (KernelKind::Gaussian, 16, 32, 0.4, 0.3, 0.5, 50_000),
        (KernelKind::Softmax, 64, 64, 0.5, 0.5, 1.57, 12_000),
    ];
    for (kernel, d, m, r1, r2, t, n) in cases {
        let (x, y) = pair(d, r1, r2, t);
        let k = kernel.exact(&x, &y);
        for coupling in [
            Coupling::Iid,
            Coupling::Orthogonal,
            Coupling::Simplex,
            Coupling::FullSimplex,
        ] {
            let spec = ProjectionSpec::new(coupling, m, d, base).unwrap();
            let est = sample(n, |i| estimate(kernel, &spec.draw(i), &x, &y));
            let mse = exact_mse(kernel, coupling, m, &x, &y).unwrap();
            let (z_mean, z_mse, got) = z_scores(&est, k, mse);
            let what = format!("seed {base} {kernel:?} d={d} m={m} {coupling:?}");
            assert!(z_mean.abs() < 5.0, "{what}: mean z = {z_mean:.2}");
            assert!(
                z_mse.abs() < 5.0,
                "{what}: MSE {got:.5e} vs {mse:.5e}, z = {z_mse:.2}"
            );
        }
    }
}

#[test]
fn simplex_plus_is_unbiased_and_beats_simplex_empirically() {
    let base = common::seed();
    let (d, m, n) = (8, 16, 60_000);
    let (x, y) = pair(d, 0.6, 0.7, 1.0);
    let k = KernelKind::Softmax.exact(&x, &y);
    let run = |c| {
        let spec = ProjectionSpec::new(c, m, d, base).unwrap();
        sample(n, |i| estimate(KernelKind::Softmax, &spec.draw(i), &x, &y))
    };
    let plain_mse = exact_mse(KernelKind::Softmax, Coupling::Simplex, m, &x, &y).unwrap();
    let (z_mean, _, plus_mse) = z_scores(&run(Coupling::SimplexPlus), k, plain_mse);
    assert!(
        z_mean.abs() < 5.0,
        "seed {base}: SimRF+ mean z = {z_mean:.2}"
    );
    assert!(
        plus_mse < plain_mse,
        "seed {base}: SimRF+ {plus_mse:.4e} vs {plain_mse:.4e}"
    );
}

#[test]
fn hadamard_rotation_is_close_to_haar() {
    // Not exactly Haar, so no z-test at 5 sigma: the bias must stay within 1% of K and the MSE
    // within 10% of the Haar formula.
    let base = common::seed();
    let (d, m, n) = (16, 32, 40_000);
    let (x, y) = pair(d, 0.5, 0.5, 1.0);
    let k = KernelKind::Softmax.exact(&x, &y);
    for c in [Coupling::Orthogonal, Coupling::Simplex] {
        let spec = ProjectionSpec::new(c, m, d, base)
            .unwrap()
            .with_rotation(Rotation::Hadamard)
            .unwrap();
        let est = sample(n, |i| estimate(KernelKind::Softmax, &spec.draw(i), &x, &y));
        let mse = exact_mse(KernelKind::Softmax, c, m, &x, &y).unwrap();
        let mean = est.iter().sum::<f64>() / n as f64;
        let (_, _, got) = z_scores(&est, k, mse);
        assert!(
            (mean / k - 1.0).abs() < 0.01,
            "seed {base} {c:?}: mean/K = {}",
            mean / k
        );
        assert!(
            (got / mse - 1.0).abs() < 0.1,
            "seed {base} {c:?}: {got:.4e} vs {mse:.4e}"
        );
    }
}

#[test]
fn omitting_the_qr_sign_fix_biases_the_estimate() {
    // ORF rows taken from Householder QR without the sign fix: the first row's first
    // coordinate is always negative, so with x on that axis the estimate is biased (the note:
    // mean/K = 0.868 at d = 8). The same test with the fix passes, which shows the z-test has
    // the power to see it.
    let base = common::seed();
    let (d, n) = (8, 40_000);
    let mut x = vec![0.0; d];
    x[0] = 1.0;
    let y = x.clone();
    let k = KernelKind::Softmax.exact(&x, &y);
    let orf = |fix: SignFix, i: u64| {
        let mut rng = Stream::new(base, i, 0);
        let q = haar_orthogonal(&mut rng, d, fix);
        let w = (0..d)
            .flat_map(|r| {
                let n = (0..d).map(|_| rng.normal().powi(2)).sum::<f64>().sqrt();
                q[r * d..(r + 1) * d]
                    .iter()
                    .map(move |v| v * n)
                    .collect::<Vec<_>>()
            })
            .collect();
        estimate(
            KernelKind::Softmax,
            &Projection {
                features: d,
                dim: d,
                w,
            },
            &x,
            &y,
        )
    };
    let mse = exact_mse(KernelKind::Softmax, Coupling::Orthogonal, d, &x, &y).unwrap();
    let (z_fixed, _, _) = z_scores(&sample(n, |i| orf(SignFix::Applied, i)), k, mse);
    let biased = sample(n, |i| orf(SignFix::Omitted, i));
    let (z_biased, _, _) = z_scores(&biased, k, mse);
    let ratio = biased.iter().sum::<f64>() / n as f64 / k;
    eprintln!(
        "sign fix omitted: mean/K = {ratio:.4} (z = {z_biased:.1}); applied: z = {z_fixed:.2}"
    );
    assert!(
        z_fixed.abs() < 5.0,
        "seed {base}: with the fix, z = {z_fixed:.2}"
    );
    assert!(
        z_biased.abs() > 6.0,
        "seed {base}: without the fix, z = {z_biased:.2}"
    );
}

// ---- feature maps ------------------------------------------------------------------------------

#[test]
fn features_estimate_the_kernel_and_stabilizers_only_scale_rows() {
    let mut rng = Rng::new();
    let (d, m, rows) = (10, 24, 6);
    let w = ProjectionSpec::new(Coupling::Simplex, m, d, rng.seed)
        .unwrap()
        .draw(0);
    let x: Vec<f64> = (0..rows * d).map(|_| 0.5 * rng.normal()).collect();
    for kernel in [KernelKind::Softmax, KernelKind::Gaussian] {
        let plain = features(&FeatureMap::unbiased(kernel), &w, &x, rows).unwrap();
        // φ(x)·φ(y) is the estimator.
        for r in 1..rows {
            let got = dot(&plain.phi[..m], &plain.phi[r * m..(r + 1) * m]);
            let want = estimate(kernel, &w, &x[..d], &x[r * d..(r + 1) * d]);
            assert!(
                (got - want).abs() < 1e-13 * want,
                "seed {}: {got} vs {want}",
                rng.seed
            );
        }
        // The batched estimate: the same values, computed from the largest exponent.
        let pairs = rows - 1;
        let batch = estimate_pairs(kernel, &w, &x[..pairs * d], &x[d..], pairs).unwrap();
        for (p, got) in batch.iter().enumerate() {
            let want = estimate(
                kernel,
                &w,
                &x[p * d..(p + 1) * d],
                &x[(p + 1) * d..(p + 2) * d],
            );
            assert!(
                (got - want).abs() < 1e-13 * want,
                "pair {p}: {got} vs {want}"
            );
        }
        assert!(estimate_pairs(kernel, &w, &x[..d], &x[..d + 1], 1).is_err());
        for stabilizer in [Stabilizer::Row, Stabilizer::Group { rows: 3 }] {
            let map = FeatureMap {
                stabilizer,
                ..FeatureMap::unbiased(kernel)
            };
            let f = features(&map, &w, &x, rows).unwrap();
            for r in 0..rows {
                for i in 0..m {
                    let want = plain.phi[r * m + i];
                    let got = f.phi[r * m + i] * f.shift[r].exp();
                    assert!((got - want).abs() < 1e-13 * want, "{stabilizer:?}");
                }
                let row_max = f.phi[r * m..(r + 1) * m]
                    .iter()
                    .copied()
                    .fold(0.0, f64::max);
                if stabilizer == Stabilizer::Row {
                    assert!((row_max * (m as f64).sqrt() - 1.0).abs() < 1e-14);
                } else {
                    assert!(row_max * (m as f64).sqrt() <= 1.0 + 1e-14);
                }
            }
        }
    }
}

#[test]
fn a_non_finite_row_affects_only_itself() {
    let (d, m, rows) = (6, 12, 4);
    let w = ProjectionSpec::new(Coupling::Orthogonal, m, d, 3)
        .unwrap()
        .draw(0);
    let mut x: Vec<f64> = (0..rows * d).map(|i| (i as f64 * 0.37).sin()).collect();
    let map = FeatureMap {
        stabilizer: Stabilizer::Group { rows },
        eps: 1e-6,
        ..FeatureMap::unbiased(KernelKind::Softmax)
    };
    let clean = features(&map, &w, &x, rows).unwrap();
    x[2 * d + 1] = f64::NAN;
    let f = features(&map, &w, &x, rows).unwrap();
    for r in 0..rows {
        let row = &f.phi[r * m..(r + 1) * m];
        if r == 2 {
            assert!(row.iter().all(|v| v.is_nan()));
        } else {
            // The row max of row 2 is NaN and ignored; the group max may change only if row 2
            // held it.
            assert!(row.iter().all(|v| v.is_finite()));
            let ratio = row[0] / clean.phi[r * m];
            assert!(row.iter().zip(&clean.phi[r * m..]).all(|(a, b)| {
                let e = map.eps / (m as f64).sqrt();
                ((a - e) / (b - e) - ratio).abs() < 1e-9 * ratio.max(1.0)
            }));
        }
    }
}

// ---- attention ---------------------------------------------------------------------------------

fn random(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| scale * rng.normal()).collect()
}

#[test]
fn favor_approaches_softmax_attention_as_m_grows() {
    let mut rng = Rng::new();
    let shape = AttentionShape {
        heads: 2,
        len: 12,
        dim: 8,
        value_dim: 3,
    };
    let rows = shape.heads * shape.len;
    let q = random(&mut rng, rows * shape.dim, 0.3);
    let k = random(&mut rng, rows * shape.dim, 0.3);
    let v = random(&mut rng, rows * shape.value_dim, 1.0);
    for causal in [false, true] {
        let exact =
            softmax_attention(&shape, 1.0 / (shape.dim as f64).sqrt(), causal, &q, &k, &v).unwrap();
        let opts = Favor {
            input_scale: (shape.dim as f64).powf(-0.25),
            eps: 0.0,
            guard: 0.0,
            causal,
        };
        // Root mean squared error over 24 draws at each m.
        let rmse = |m: usize| -> f64 {
            let mut total = 0.0;
            for draw in 0..24 {
                let w = ProjectionSpec::new(Coupling::Simplex, m, shape.dim, rng.seed)
                    .unwrap()
                    .draw(draw);
                let out = favor_attention(&opts, &shape, &w, &q, &k, &v).unwrap();
                total += out
                    .iter()
                    .zip(&exact)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>();
            }
            (total / (24 * exact.len()) as f64).sqrt()
        };
        let (small, large) = (rmse(16), rmse(1024));
        // m grows 64x: the error should fall about 8x (m^-1/2); allow 4x to 16x.
        let fall = small / large;
        assert!(
            (4.0..16.0).contains(&fall),
            "seed {} causal={causal}: rmse {small:.3e} at m=16, {large:.3e} at m=1024",
            rng.seed
        );
    }
}

#[test]
fn favor_identities_causal_prefix_and_shift_invariance() {
    let mut rng = Rng::new();
    let shape = AttentionShape {
        heads: 3,
        len: 9,
        dim: 6,
        value_dim: 5,
    };
    let rows = shape.heads * shape.len;
    let q = random(&mut rng, rows * shape.dim, 1.0);
    let k = random(&mut rng, rows * shape.dim, 1.0);
    let v = random(&mut rng, rows * shape.value_dim, 1.0);
    let w = ProjectionSpec::new(Coupling::Simplex, 20, shape.dim, rng.seed)
        .unwrap()
        .draw(0);
    let opts = Favor {
        input_scale: 0.7,
        eps: 0.0,
        guard: 0.0,
        causal: true,
    };
    let causal = favor_attention(&opts, &shape, &w, &q, &k, &v).unwrap();
    let full = favor_attention(
        &Favor {
            causal: false,
            ..opts
        },
        &shape,
        &w,
        &q,
        &k,
        &v,
    )
    .unwrap();
    let dv = shape.value_dim;
    for h in 0..shape.heads {
        let first = h * shape.len;
        let last = first + shape.len - 1;
        for c in 0..dv {
            // Position 0 sees only itself; the last position sees everything.
            assert!((causal[first * dv + c] - v[first * dv + c]).abs() < 1e-12);
            assert!((causal[last * dv + c] - full[last * dv + c]).abs() < 1e-12);
        }
    }
    // With eps = guard = 0 the shifts cancel: the unbiased features give the same output.
    let fq = features(
        &FeatureMap {
            input_scale: 0.7,
            ..FeatureMap::unbiased(KernelKind::Softmax)
        },
        &w,
        &q,
        rows,
    )
    .unwrap()
    .phi;
    let fk = features(
        &FeatureMap {
            input_scale: 0.7,
            ..FeatureMap::unbiased(KernelKind::Softmax)
        },
        &w,
        &k,
        rows,
    )
    .unwrap()
    .phi;
    let m = w.features;
    for h in 0..shape.heads {
        for i in 0..shape.len {
            let r = h * shape.len + i;
            let mut num = vec![0.0; dv];
            let mut den = 0.0;
            for j in 0..shape.len {
                let s = h * shape.len + j;
                let a = dot(&fq[r * m..(r + 1) * m], &fk[s * m..(s + 1) * m]);
                den += a;
                num.iter_mut()
                    .zip(&v[s * dv..(s + 1) * dv])
                    .for_each(|(n, x)| *n += a * x);
            }
            for c in 0..dv {
                assert!((num[c] / den - full[r * dv + c]).abs() < 1e-12);
            }
        }
    }
}

/// Central differences of f at x along every coordinate.
fn finite_differences(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = 1e-5 * x[i].abs().max(1.0);
            xp[i] = x[i] + h;
            let up = f(&xp);
            xp[i] = x[i] - h;
            let down = f(&xp);
            xp[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let scale = want.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: {g} vs {w} (scale {scale})"
        );
    }
}

#[test]
fn feature_gradients_match_finite_differences() {
    let mut rng = Rng::new();
    let (d, m, rows) = (5, 7, 3);
    let w = ProjectionSpec::new(Coupling::Orthogonal, m, d, rng.seed)
        .unwrap()
        .draw(0);
    let x = random(&mut rng, rows * d, 0.5);
    let dphi = random(&mut rng, rows * m, 1.0);
    for kernel in [KernelKind::Softmax, KernelKind::Gaussian] {
        let map = FeatureMap {
            input_scale: 0.8,
            eps: 1e-3,
            ..FeatureMap::unbiased(kernel)
        };
        let got = features_backward(&map, &w, &x, rows, &dphi).unwrap();
        let fd = finite_differences(&x, |x| {
            dot(&features(&map, &w, x, rows).unwrap().phi, &dphi)
        });
        assert_close(&format!("seed {} {kernel:?} dx", rng.seed), &got, &fd, 1e-7);
    }
}

#[test]
fn attention_gradients_match_finite_differences() {
    let mut rng = Rng::new();
    let shape = AttentionShape {
        heads: 2,
        len: 5,
        dim: 4,
        value_dim: 3,
    };
    let rows = shape.heads * shape.len;
    let w = ProjectionSpec::new(Coupling::Simplex, 6, shape.dim, rng.seed)
        .unwrap()
        .draw(0);
    let q = random(&mut rng, rows * shape.dim, 0.8);
    let k = random(&mut rng, rows * shape.dim, 0.8);
    let v = random(&mut rng, rows * shape.value_dim, 1.0);
    let dout = random(&mut rng, rows * shape.value_dim, 1.0);
    for causal in [false, true] {
        // eps = guard = 0: the shifts cancel exactly, so holding them constant is the true gradient.
        let opts = Favor {
            input_scale: 0.9,
            eps: 0.0,
            guard: 0.0,
            causal,
        };
        let loss = |q: &[f64], k: &[f64], v: &[f64]| {
            dot(&favor_attention(&opts, &shape, &w, q, k, v).unwrap(), &dout)
        };
        let (dq, dk, dv) = favor_attention_backward(&opts, &shape, &w, &q, &k, &v, &dout).unwrap();
        let what = format!("seed {} causal={causal}", rng.seed);
        assert_close(
            &format!("{what} dq"),
            &dq,
            &finite_differences(&q, |x| loss(x, &k, &v)),
            1e-7,
        );
        assert_close(
            &format!("{what} dk"),
            &dk,
            &finite_differences(&k, |x| loss(&q, x, &v)),
            1e-7,
        );
        assert_close(
            &format!("{what} dv"),
            &dv,
            &finite_differences(&v, |x| loss(&q, &k, x)),
            1e-7,
        );
    }
}

// ---- kernels: the feature map on the emulator and the GPU -------------------------------------

use common::Mat;
use half::{bf16, f16};
use spherekit::Element;

/// Runs the feature-map entry point on one target, host buffers in and out.
trait Backend {
    fn features<T: Element>(
        &self,
        map: &FeatureMap,
        w: &Projection,
        x: &Mat<T>,
        out: &mut Mat<T>,
        shift: &mut [f32],
    ) -> spherekit::Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn favor<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        q: &Mat<T>,
        k: &Mat<T>,
        v: &Mat<T>,
        out: &mut Mat<T>,
    ) -> spherekit::Result<()>;
    fn features_backward<T: Element>(
        &self,
        map: &FeatureMap,
        w: &Projection,
        x: &Mat<T>,
        shift: &[f32],
        dphi: &Mat<T>,
        dx: &mut Mat<T>,
    ) -> spherekit::Result<()>;
    /// FAVOR+ gradients: `inputs` = [q, k, v], `grads` = [dq, dk, dv].
    fn favor_backward<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        inputs: [&Mat<T>; 3],
        dout: &Mat<T>,
        grads: [&mut Mat<T>; 3],
    ) -> spherekit::Result<()>;
    /// A FAVOR+ training step: the forward with its stages saved (`out`), then the gradients
    /// from them (`grads` = [dq, dk, dv]).
    #[allow(clippy::too_many_arguments)]
    fn favor_training_step<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        inputs: [&Mat<T>; 3],
        dout: &Mat<T>,
        out: &mut Mat<T>,
        grads: [&mut Mat<T>; 3],
    ) -> spherekit::Result<()>;
    /// log K̂ of the pairs of rows of x and y.
    fn log_estimates<T: Element>(
        &self,
        kernel: KernelKind,
        w: &Projection,
        x: &Mat<T>,
        y: &Mat<T>,
        out: &mut [f32],
    ) -> spherekit::Result<()>;
}

#[cfg(feature = "emulator")]
struct Emu(spherekit::emulator::Emulator);

/// A test matrix as the emulator's host rows.
#[cfg(feature = "emulator")]
fn host<U: Element>(m: &Mat<U>) -> spherekit::emulator::HostRows<'_, U> {
    spherekit::emulator::HostRows::new(m.view(), m.rows, m.cols, m.stride).unwrap()
}

/// A test matrix as the emulator's writable host rows.
#[cfg(feature = "emulator")]
fn host_mut<U: Element>(m: &mut Mat<U>) -> spherekit::emulator::HostRowsMut<'_, U> {
    let (rows, cols, stride) = (m.rows, m.cols, m.stride);
    spherekit::emulator::HostRowsMut::new(m.view_mut(), rows, cols, stride).unwrap()
}

#[cfg(feature = "emulator")]
impl Backend for Emu {
    fn features<T: Element>(
        &self,
        map: &FeatureMap,
        w: &Projection,
        x: &Mat<T>,
        out: &mut Mat<T>,
        shift: &mut [f32],
    ) -> spherekit::Result<()> {
        use spherekit::emulator::{HostRows, HostRowsMut};
        let xr = HostRows::new(x.view(), x.rows, x.cols, x.stride)?;
        let (rows, cols, stride) = (out.rows, out.cols, out.stride);
        let mut o = HostRowsMut::new(out.view_mut(), rows, cols, stride)?;
        map.features_emulated(&self.0, &w.to_f32(), w.features, &xr, &mut o, shift)
    }

    fn favor<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        q: &Mat<T>,
        k: &Mat<T>,
        v: &Mat<T>,
        out: &mut Mat<T>,
    ) -> spherekit::Result<()> {
        opts.forward_emulated(
            &self.0,
            shape,
            &w.to_f32(),
            w.features,
            &host(q),
            &host(k),
            &host(v),
            &mut host_mut(out),
        )
    }

    fn features_backward<T: Element>(
        &self,
        map: &FeatureMap,
        w: &Projection,
        x: &Mat<T>,
        shift: &[f32],
        dphi: &Mat<T>,
        dx: &mut Mat<T>,
    ) -> spherekit::Result<()> {
        use spherekit::emulator::{HostRows, HostRowsMut};
        let xr = HostRows::new(x.view(), x.rows, x.cols, x.stride)?;
        let gr = HostRows::new(dphi.view(), dphi.rows, dphi.cols, dphi.stride)?;
        let (rows, cols, stride) = (dx.rows, dx.cols, dx.stride);
        let mut o = HostRowsMut::new(dx.view_mut(), rows, cols, stride)?;
        map.features_backward_emulated(&self.0, &w.to_f32(), w.features, &xr, shift, &gr, &mut o)
    }

    fn favor_backward<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        inputs: [&Mat<T>; 3],
        dout: &Mat<T>,
        grads: [&mut Mat<T>; 3],
    ) -> spherekit::Result<()> {
        let [q, k, v] = inputs;
        let [dq, dk, dv] = grads;
        opts.backward_emulated(
            &self.0,
            shape,
            &w.to_f32(),
            w.features,
            &host(q),
            &host(k),
            &host(v),
            &host(dout),
            &mut host_mut(dq),
            &mut host_mut(dk),
            &mut host_mut(dv),
        )
    }
    fn favor_training_step<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        inputs: [&Mat<T>; 3],
        dout: &Mat<T>,
        out: &mut Mat<T>,
        grads: [&mut Mat<T>; 3],
    ) -> spherekit::Result<()> {
        let [q, k, v] = inputs;
        let [dq, dk, dv] = grads;
        opts.training_step_emulated(
            &self.0,
            shape,
            &w.to_f32(),
            w.features,
            &host(q),
            &host(k),
            &host(v),
            &host(dout),
            &mut host_mut(out),
            &mut host_mut(dq),
            &mut host_mut(dk),
            &mut host_mut(dv),
        )
    }

    fn log_estimates<T: Element>(
        &self,
        kernel: KernelKind,
        w: &Projection,
        x: &Mat<T>,
        y: &Mat<T>,
        out: &mut [f32],
    ) -> spherekit::Result<()> {
        use spherekit::emulator::HostRows;
        let xr = HostRows::new(x.view(), x.rows, x.cols, x.stride)?;
        let yr = HostRows::new(y.view(), y.rows, y.cols, y.stride)?;
        spherekit::simplex::log_estimate_pairs_emulated(
            &self.0,
            kernel,
            &w.to_f32(),
            w.features,
            &xr,
            &yr,
            out,
        )
    }
}

struct Device {
    gpu: spherekit::Gpu,
    stream: std::sync::Arc<cudarc::driver::CudaStream>,
}

impl Device {
    /// FAVOR+ gradients on the device: `Favor::backward`, or with `out` a training step
    /// (`forward_saved` into `out`, then `backward_saved`).
    #[allow(clippy::too_many_arguments)]
    fn favor_gradients<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        inputs: [&Mat<T>; 3],
        dout: &Mat<T>,
        out: Option<&mut Mat<T>>,
        grads: [&mut Mat<T>; 3],
    ) -> spherekit::Result<()> {
        use cudarc::driver::CudaSlice;
        use spherekit::simplex::gpu::DeviceProjection;
        use spherekit::{Rows, RowsMut, Workspace};
        fn rows<'a, U: Element>(d: &'a CudaSlice<U>, m: &Mat<U>) -> spherekit::Result<Rows<'a, U>> {
            Rows::with_stride(d.as_view(), m.rows, m.cols, m.stride)
        }
        fn rows_mut<'a, U: Element>(
            d: &'a mut CudaSlice<U>,
            m: &Mat<U>,
        ) -> spherekit::Result<RowsMut<'a, U>> {
            RowsMut::with_stride(d.as_view_mut(), m.rows, m.cols, m.stride)
        }
        let s = &self.stream;
        let wd = DeviceProjection::upload(s, w)?;
        let up = |m: &Mat<T>| s.clone_htod(m.view()).expect("upload");
        let [q, k, v] = inputs;
        let (qd, kd, vd, dd) = (up(q), up(k), up(v), up(dout));
        let [dq, dk, dv] = grads;
        let (mut dqd, mut dkd, mut dvd) = (up(dq), up(dk), up(dv));
        let mut ws = Workspace::new();
        let (qr, kr, vr, dr) = (
            rows(&qd, q)?,
            rows(&kd, k)?,
            rows(&vd, v)?,
            rows(&dd, dout)?,
        );
        let mut out = out.map(|o| (up(o), o));
        let saved = match out.as_mut() {
            Some((od, o)) => Some(opts.forward_saved(
                &self.gpu,
                s,
                shape,
                &wd,
                &qr,
                &kr,
                &vr,
                &mut rows_mut(od, o)?,
                &mut ws,
            )?),
            None => None,
        };
        let (mut dqr, mut dkr, mut dvr) = (
            rows_mut(&mut dqd, dq)?,
            rows_mut(&mut dkd, dk)?,
            rows_mut(&mut dvd, dv)?,
        );
        match &saved {
            Some(saved) => opts.backward_saved(
                &self.gpu, s, saved, shape, &wd, &qr, &kr, &vr, &dr, &mut dqr, &mut dkr, &mut dvr,
                &mut ws,
            )?,
            None => opts.backward(
                &self.gpu, s, shape, &wd, &qr, &kr, &vr, &dr, &mut dqr, &mut dkr, &mut dvr, &mut ws,
            )?,
        }
        s.synchronize().expect("synchronize");
        for (host, dev) in [(dq, &dqd), (dk, &dkd), (dv, &dvd)] {
            host.view_mut()
                .copy_from_slice(&s.clone_dtoh(dev).expect("download"));
        }
        if let Some((od, o)) = out {
            o.view_mut()
                .copy_from_slice(&s.clone_dtoh(&od).expect("download"));
        }
        Ok(())
    }
}

impl Backend for Device {
    fn features<T: Element>(
        &self,
        map: &FeatureMap,
        w: &Projection,
        x: &Mat<T>,
        out: &mut Mat<T>,
        shift: &mut [f32],
    ) -> spherekit::Result<()> {
        use spherekit::simplex::gpu::DeviceProjection;
        use spherekit::{Rows, RowsMut};
        let s = &self.stream;
        let wd = DeviceProjection::upload(s, w)?;
        let xd = s.clone_htod(x.view()).expect("upload");
        let mut od = s.clone_htod(out.view()).expect("upload");
        let mut sd = s.clone_htod(shift).expect("upload");
        {
            let xr = Rows::with_stride(xd.as_view(), x.rows, x.cols, x.stride)?;
            let mut or = RowsMut::with_stride(od.as_view_mut(), out.rows, out.cols, out.stride)?;
            map.features(&self.gpu, s, &wd, &xr, &mut or, &mut sd.as_view_mut())?;
        }
        s.synchronize().expect("synchronize");
        let o = s.clone_dtoh(&od).expect("download");
        out.view_mut().copy_from_slice(&o);
        shift.copy_from_slice(&s.clone_dtoh(&sd).expect("download"));
        Ok(())
    }

    fn favor<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        q: &Mat<T>,
        k: &Mat<T>,
        v: &Mat<T>,
        out: &mut Mat<T>,
    ) -> spherekit::Result<()> {
        use spherekit::simplex::gpu::DeviceProjection;
        use spherekit::{Rows, RowsMut, Workspace};
        let s = &self.stream;
        let wd = DeviceProjection::upload(s, w)?;
        let up = |m: &Mat<T>| s.clone_htod(m.view()).expect("upload");
        let (qd, kd, vd) = (up(q), up(k), up(v));
        let mut od = s.clone_htod(out.view()).expect("upload");
        let mut ws = Workspace::new();
        {
            fn rows<'a, U: Element>(
                d: &'a cudarc::driver::CudaSlice<U>,
                m: &Mat<U>,
            ) -> spherekit::Result<Rows<'a, U>> {
                Rows::with_stride(d.as_view(), m.rows, m.cols, m.stride)
            }
            let mut or = RowsMut::with_stride(od.as_view_mut(), out.rows, out.cols, out.stride)?;
            opts.forward(
                &self.gpu,
                s,
                shape,
                &wd,
                &rows(&qd, q)?,
                &rows(&kd, k)?,
                &rows(&vd, v)?,
                &mut or,
                &mut ws,
            )?;
        }
        s.synchronize().expect("synchronize");
        out.view_mut()
            .copy_from_slice(&s.clone_dtoh(&od).expect("download"));
        Ok(())
    }

    fn features_backward<T: Element>(
        &self,
        map: &FeatureMap,
        w: &Projection,
        x: &Mat<T>,
        shift: &[f32],
        dphi: &Mat<T>,
        dx: &mut Mat<T>,
    ) -> spherekit::Result<()> {
        use spherekit::simplex::gpu::DeviceProjection;
        use spherekit::{Rows, RowsMut};
        let s = &self.stream;
        let wd = DeviceProjection::upload(s, w)?;
        let xd = s.clone_htod(x.view()).expect("upload");
        let gd = s.clone_htod(dphi.view()).expect("upload");
        let sd = s.clone_htod(shift).expect("upload");
        let mut dd = s.clone_htod(dx.view()).expect("upload");
        {
            let xr = Rows::with_stride(xd.as_view(), x.rows, x.cols, x.stride)?;
            let gr = Rows::with_stride(gd.as_view(), dphi.rows, dphi.cols, dphi.stride)?;
            let mut dr = RowsMut::with_stride(dd.as_view_mut(), dx.rows, dx.cols, dx.stride)?;
            map.features_backward(&self.gpu, s, &wd, &xr, &sd.as_view(), &gr, &mut dr)?;
        }
        s.synchronize().expect("synchronize");
        dx.view_mut()
            .copy_from_slice(&s.clone_dtoh(&dd).expect("download"));
        Ok(())
    }

    fn favor_backward<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        inputs: [&Mat<T>; 3],
        dout: &Mat<T>,
        grads: [&mut Mat<T>; 3],
    ) -> spherekit::Result<()> {
        self.favor_gradients(opts, shape, w, inputs, dout, None, grads)
    }

    fn favor_training_step<T: Element>(
        &self,
        opts: &Favor,
        shape: &AttentionShape,
        w: &Projection,
        inputs: [&Mat<T>; 3],
        dout: &Mat<T>,
        out: &mut Mat<T>,
        grads: [&mut Mat<T>; 3],
    ) -> spherekit::Result<()> {
        self.favor_gradients(opts, shape, w, inputs, dout, Some(out), grads)
    }

    fn log_estimates<T: Element>(
        &self,
        kernel: KernelKind,
        w: &Projection,
        x: &Mat<T>,
        y: &Mat<T>,
        out: &mut [f32],
    ) -> spherekit::Result<()> {
        use spherekit::Rows;
        use spherekit::simplex::gpu::{DeviceProjection, log_estimate_pairs};
        let s = &self.stream;
        let wd = DeviceProjection::upload(s, w)?;
        let xd = s.clone_htod(x.view()).expect("upload");
        let yd = s.clone_htod(y.view()).expect("upload");
        let mut od = s.clone_htod(out).expect("upload");
        {
            let xr = Rows::with_stride(xd.as_view(), x.rows, x.cols, x.stride)?;
            let yr = Rows::with_stride(yd.as_view(), y.rows, y.cols, y.stride)?;
            log_estimate_pairs(&self.gpu, s, kernel, &wd, &xr, &yr, &mut od.as_view_mut())?;
        }
        s.synchronize().expect("synchronize");
        out.copy_from_slice(&s.clone_dtoh(&od).expect("download"));
        Ok(())
    }
}

/// One feature-map case against the f64 reference on the rounded inputs. Tolerance per
/// feature: one ulp of T, plus the f32 error of the exponent and the shift,
/// 2^-24 (d + 4) (s Σ_k |w_ik x_k| + c s²|x|² + |shift|), plus 4 ulp of f32 for expf.
#[allow(clippy::too_many_arguments)]
fn check_features<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    kernel: KernelKind,
    stabilizer: Stabilizer,
    rows: usize,
    d: usize,
    m: usize,
    nan_row: Option<usize>,
) {
    let layout = (d + rng.below(3), rng.below(3));
    check_features_in::<T, B>(b, rng, kernel, stabilizer, rows, d, m, nan_row, layout);
}

/// [`check_features`] with x at row stride `layout.0` from element `layout.1` of its buffer.
#[allow(clippy::too_many_arguments)]
fn check_features_in<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    kernel: KernelKind,
    stabilizer: Stabilizer,
    rows: usize,
    d: usize,
    m: usize,
    nan_row: Option<usize>,
    layout: (usize, usize),
) {
    let map = FeatureMap {
        kernel,
        stabilizer,
        eps: 1e-4,
        input_scale: (d as f64).powf(-0.25),
    };
    let w = ProjectionSpec::new(Coupling::Orthogonal, m, d, rng.seed)
        .unwrap()
        .draw(1);
    let w32 = Projection {
        w: w.to_f32().iter().map(|&v| f64::from(v)).collect(),
        ..w.clone()
    };
    let (stride, offset) = layout;
    let x = Mat::<T>::from_fn(rows, d, stride, offset, |r, _| {
        if Some(r) == nan_row {
            f64::NAN
        } else {
            0.8 * rng.normal()
        }
    });
    let out_stride = m + rng.below(3);
    let mut out = Mat::<T>::poisoned(rows, m, out_stride, rng.below(3));
    let mut shift = vec![f32::NAN; rows];
    let what = format!(
        "seed {} {} {kernel:?} {stabilizer:?} rows={rows} d={d} m={m}",
        rng.seed,
        T::DTYPE.name()
    );
    b.features(&map, &w, &x, &mut out, &mut shift)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.padding_untouched(), "{what}: wrote outside the rows");
    let xf = x.to_f64();
    let want = features(&map, &w32, &xf, rows).unwrap();
    let got = out.to_f64();
    let (s, c) = (map.input_scale, kernel.norm_coefficient());
    let u32_ = 2f64.powi(-24);
    // 16-bit inputs run on the tensor cores with W split as W_hi + W_lo in the input type:
    // |W − W_hi − W_lo| ≤ u² |W| (bf16 u = 2^-8; f16 2^-11, and 2^-25 absolute where W_lo is
    // subnormal, covered by 2^-21).
    let split = match T::DTYPE {
        spherekit::DType::BF16 => 2f64.powi(-16),
        spherekit::DType::F16 => 2f64.powi(-21),
        spherekit::DType::F32 => 0.0,
    };
    let mut worst = 0.0f64;
    for r in 0..rows {
        let xr = &xf[r * d..(r + 1) * d];
        let ws = want.shift[r];
        let gs = f64::from(shift[r]);
        if xr.iter().any(|v| v.is_nan()) {
            assert!(
                got[r * m..(r + 1) * m].iter().all(|v| v.is_nan()),
                "{what}: NaN row {r}"
            );
            continue;
        }
        let norm = c * s * s * dot(xr, xr);
        // s Σ_k |w_ik x_k| for each feature i.
        let wx: Vec<f64> = (0..m)
            .map(|i| {
                s * w32
                    .row(i)
                    .iter()
                    .zip(xr)
                    .map(|(a, b)| (a * b).abs())
                    .sum::<f64>()
            })
            .collect();
        let wx_max = wx.iter().copied().fold(0.0, f64::max);
        let shift_err =
            u32_ * (d as f64 + 4.0) * (norm + ws.abs() + s * 8.0 * d as f64) + split * wx_max;
        assert!(
            (gs - ws).abs() <= shift_err + 1e-30,
            "{what}: shift of row {r}: {gs} vs {ws}"
        );
        for i in 0..m {
            let bound = wx[i] + norm + ws.abs();
            let want_v = want.phi[r * m + i];
            let tol = common::ulp(T::DTYPE, want_v)
                + want_v * (u32_ * ((d as f64 + 4.0) * bound + 4.0) + split * (wx[i] + wx_max));
            let err = (got[r * m + i] - want_v).abs();
            assert!(
                err <= tol,
                "{what}: phi[{r}][{i}] = {} vs {want_v} (tol {tol:.2e})",
                got[r * m + i]
            );
            worst = worst.max(err / want_v);
        }
    }
    eprintln!("{what}: worst relative error {worst:.2e}");
}

fn feature_cases<B: Backend>(b: &B) {
    let mut rng = Rng::new();
    // m: one tile, a partial tile, the largest fused m (256), recomputed exponents (300);
    // d: a partial chunk, whole chunks, several chunks with a remainder.
    let shapes = [
        (1, 1, 1),
        (33, 16, 37),
        (70, 70, 256),
        (40, 5, 300),
        (64, 64, 128),
    ];
    for (rows, d, m) in shapes {
        for stabilizer in [
            Stabilizer::None,
            Stabilizer::Row,
            Stabilizer::Group {
                rows: if rows % 2 == 0 { rows / 2 } else { rows },
            },
        ] {
            for kernel in [KernelKind::Softmax, KernelKind::Gaussian] {
                check_features::<f32, B>(b, &mut rng, kernel, stabilizer, rows, d, m, None);
            }
            check_features::<f16, B>(
                b,
                &mut rng,
                KernelKind::Softmax,
                stabilizer,
                rows,
                d,
                m,
                None,
            );
            check_features::<bf16, B>(
                b,
                &mut rng,
                KernelKind::Softmax,
                stabilizer,
                rows,
                d,
                m,
                None,
            );
        }
    }
    // 16-byte aligned rows of x with d a multiple of 8: the tensor-core kernel's register
    // prefetch of the next tile (more tiles than blocks, so blocks loop), with and without the
    // fused row shift, and a row with NaN.
    for (d, m, stabilizer) in [
        (64, 256, Stabilizer::Row),
        (40, 300, Stabilizer::Row),
        (128, 72, Stabilizer::Group { rows: 100 }),
    ] {
        check_features_in::<bf16, B>(
            b,
            &mut rng,
            KernelKind::Softmax,
            stabilizer,
            500,
            d,
            m,
            Some(77),
            (d, 0),
        );
        check_features_in::<f16, B>(
            b,
            &mut rng,
            KernelKind::Gaussian,
            stabilizer,
            500,
            d,
            m,
            None,
            (d + 8, 8),
        );
    }
    // 16-bit features whose W is too large for the tensor-core kernel's shared memory take the
    // SIMT kernel (m (d + 8) 4 bytes > 227 KiB).
    check_features::<bf16, B>(
        b,
        &mut rng,
        KernelKind::Softmax,
        Stabilizer::Row,
        5,
        120,
        600,
        None,
    );
    // A NaN row spoils only itself, under every stabilizer.
    for stabilizer in [
        Stabilizer::None,
        Stabilizer::Row,
        Stabilizer::Group { rows: 10 },
    ] {
        check_features::<bf16, B>(
            b,
            &mut rng,
            KernelKind::Softmax,
            stabilizer,
            40,
            24,
            64,
            Some(13),
        );
    }
}

fn feature_errors<B: Backend>(b: &B) {
    let w = ProjectionSpec::new(Coupling::Simplex, 16, 8, 1)
        .unwrap()
        .draw(0);
    let map = FeatureMap::unbiased(KernelKind::Softmax);
    let x = Mat::<f32>::from_fn(4, 8, 8, 0, |_, _| 0.1);
    let mut out = Mat::<f32>::poisoned(4, 16, 16, 0);
    let mut shift = vec![0.0f32; 4];
    let x7 = Mat::<f32>::from_fn(4, 7, 7, 0, |_, _| 0.1);
    assert!(
        b.features(&map, &w, &x7, &mut out, &mut shift).is_err(),
        "d mismatch"
    );
    let mut short = vec![0.0f32; 3];
    assert!(
        b.features(&map, &w, &x, &mut out, &mut short).is_err(),
        "shift length"
    );
    let mut narrow = Mat::<f32>::poisoned(4, 15, 15, 0);
    assert!(
        b.features(&map, &w, &x, &mut narrow, &mut shift).is_err(),
        "out columns"
    );
    let group = FeatureMap {
        stabilizer: Stabilizer::Group { rows: 3 },
        ..map
    };
    assert!(
        b.features(&group, &w, &x, &mut out, &mut shift).is_err(),
        "group"
    );
    let huge = FeatureMap { eps: 1e300, ..map };
    assert!(
        b.features(&huge, &w, &x, &mut out, &mut shift).is_err(),
        "eps beyond f32"
    );
    assert!(
        out.to_f64().iter().all(|v| v.is_nan()),
        "nothing launched on errors"
    );
}

#[cfg(feature = "emulator")]
#[test]
fn emu_features_match_the_reference() {
    feature_cases(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[cfg(feature = "emulator")]
#[test]
fn emu_feature_errors_are_values() {
    feature_errors(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[test]
fn gpu_features_match_the_reference() {
    if let Some((gpu, stream)) = common::gpu("gpu_features_match_the_reference") {
        feature_cases(&Device { gpu, stream });
    }
}

#[test]
fn gpu_feature_errors_are_values() {
    if let Some((gpu, stream)) = common::gpu("gpu_feature_errors_are_values") {
        feature_errors(&Device { gpu, stream });
    }
}

/// Performer's FAVOR+ options: input scale dim^-1/4, eps and guard 1e-6.
fn performer(dim: usize, causal: bool) -> Favor {
    Favor {
        input_scale: (dim as f64).powf(-0.25),
        eps: 1e-6,
        guard: 1e-6,
        causal,
    }
}

/// One FAVOR+ case against the f64 reference on the rounded inputs (W rounded to f32).
/// Tolerance: one ulp of T plus 5e-5 max|v| (the output is a weighted mean of the values, and
/// the f32 weights carry relative errors near 1e-5).
#[allow(clippy::too_many_arguments)]
fn check_favor<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    heads: usize,
    len: usize,
    dim: usize,
    value_dim: usize,
    m: usize,
    causal: bool,
) {
    let shape = AttentionShape {
        heads,
        len,
        dim,
        value_dim,
    };
    let opts = performer(dim, causal);
    let rows = heads * len;
    let w = ProjectionSpec::new(Coupling::Simplex, m, dim, rng.seed)
        .unwrap()
        .draw(2);
    let w32 = Projection {
        w: w.to_f32().iter().map(|&v| f64::from(v)).collect(),
        ..w.clone()
    };
    let mut input = |cols: usize| {
        let stride = cols + rng.below(3);
        let offset = rng.below(3);
        Mat::<T>::from_fn(rows, cols, stride, offset, |_, _| rng.normal())
    };
    let (q, k, v) = (input(dim), input(dim), input(value_dim));
    let mut out = Mat::<T>::poisoned(rows, value_dim, value_dim + rng.below(3), rng.below(3));
    let what = format!(
        "seed {} {} heads={heads} len={len} dim={dim} dv={value_dim} m={m} causal={causal}",
        rng.seed,
        T::DTYPE.name()
    );
    b.favor(&opts, &shape, &w, &q, &k, &v, &mut out)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.padding_untouched(), "{what}: wrote outside the rows");
    let vf = v.to_f64();
    let want = favor_attention(&opts, &shape, &w32, &q.to_f64(), &k.to_f64(), &vf).unwrap();
    let got = out.to_f64();
    let vmax = vf.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = common::ulp(T::DTYPE, *w) + 5e-5 * vmax;
        assert!(
            (g - w).abs() <= tol,
            "{what}: out[{}][{}] = {g} vs {w}",
            i / value_dim,
            i % value_dim
        );
    }
}

fn favor_cases<B: Backend>(b: &B) {
    let mut rng = Rng::new();
    for causal in [false, true] {
        // Lengths around the 64-row segments and 16-row tiles; value_dim around the 32-column
        // lane slots and the 72-column tensor-core tasks (dv 72 and 100: two tasks, the
        // second of one and of 29 columns); m around the 16-feature k-steps.
        for (heads, len, dim, dv, m) in [
            (1, 1, 4, 1, 8),
            (2, 64, 8, 31, 16),
            (3, 65, 16, 32, 40),
            (1, 150, 8, 64, 130),
            (2, 129, 12, 5, 24),
            (2, 70, 8, 72, 20),
            (1, 80, 8, 100, 33),
        ] {
            check_favor::<f32, B>(b, &mut rng, heads, len, dim, dv, m, causal);
        }
        check_favor::<bf16, B>(b, &mut rng, 2, 100, 16, 16, 32, causal);
        check_favor::<f16, B>(b, &mut rng, 2, 100, 16, 16, 32, causal);
        favor_non_finite_rows(b, &mut rng, causal);
    }
}

/// Non-finite inputs spoil only the outputs that depend on them: a NaN in one query row only
/// that row's output; a NaN in one column of a value row exactly that column of the outputs
/// that see its key (every row of its head when non-causal; when causal, the rows at or after
/// it, while the earlier rows of its own segment, in the same masked tile product, stay clean).
/// Every other output keeps the bits of the clean run, the other head's in particular.
fn favor_non_finite_rows<B: Backend>(b: &B, rng: &mut Rng, causal: bool) {
    let (heads, len, dim, dv, m) = (2, 130, 8, 16, 32);
    let shape = AttentionShape {
        heads,
        len,
        dim,
        value_dim: dv,
    };
    let opts = performer(dim, causal);
    let rows = heads * len;
    let w = ProjectionSpec::new(Coupling::Simplex, m, dim, rng.seed)
        .unwrap()
        .draw(3);
    let mut values = |cols: usize| (0..rows * cols).map(|_| rng.normal()).collect::<Vec<_>>();
    let (qv, kv, vv) = (values(dim), values(dim), values(dv));
    let mat = |data: &[f64], cols: usize, nan_row: Option<usize>| {
        Mat::<f32>::from_fn(rows, cols, cols, 0, |r, c| {
            if Some(r) == nan_row && c == 1 {
                f64::NAN
            } else {
                data[r * cols + c]
            }
        })
    };
    let k = mat(&kv, dim, None);
    let run = |q: &Mat<f32>, v: &Mat<f32>| {
        let mut out = Mat::<f32>::poisoned(rows, dv, dv, 0);
        b.favor(&opts, &shape, &w, q, &k, v, &mut out).unwrap();
        out.to_f64()
    };
    let clean = run(&mat(&qv, dim, None), &mat(&vv, dv, None));
    assert!(
        clean.iter().all(|x| x.is_finite()),
        "causal={causal}: clean run"
    );
    // Head 0, position 70: the second segment, not at a tile edge.
    let bad = 70;
    let spoiled_q = run(&mat(&qv, dim, Some(bad)), &mat(&vv, dv, None));
    let spoiled_v = run(&mat(&qv, dim, None), &mat(&vv, dv, Some(bad)));
    for r in 0..rows {
        let sees_bad = r < len && (!causal || r >= bad);
        for c in 0..dv {
            // The NaN sits in column 1 of the value row: only that output column sees it.
            let sees_bad = sees_bad && c == 1;
            let i = r * dv + c;
            let what = format!("causal={causal}: out[{r}][{c}]");
            if r == bad {
                assert!(spoiled_q[i].is_nan(), "{what} with its query NaN");
            } else {
                assert_eq!(
                    spoiled_q[i].to_bits(),
                    clean[i].to_bits(),
                    "{what}, query {bad} NaN"
                );
            }
            if sees_bad {
                assert!(spoiled_v[i].is_nan(), "{what} sees value row {bad} (NaN)");
            } else {
                assert_eq!(
                    spoiled_v[i].to_bits(),
                    clean[i].to_bits(),
                    "{what}, value {bad} NaN"
                );
            }
        }
    }
}

fn favor_errors<B: Backend>(b: &B) {
    let w = ProjectionSpec::new(Coupling::Simplex, 16, 8, 1)
        .unwrap()
        .draw(0);
    let shape = AttentionShape {
        heads: 2,
        len: 3,
        dim: 8,
        value_dim: 4,
    };
    let opts = Favor {
        input_scale: 1.0,
        eps: 0.0,
        guard: 0.0,
        causal: true,
    };
    let mat = |cols| Mat::<f32>::from_fn(6, cols, cols, 0, |_, _| 0.1);
    let (q, v) = (mat(8), mat(4));
    let mut out = Mat::<f32>::poisoned(6, 4, 4, 0);
    let bad_shape = AttentionShape { len: 4, ..shape };
    assert!(
        b.favor(&opts, &bad_shape, &w, &q, &q, &v, &mut out)
            .is_err(),
        "rows"
    );
    let bad_dim = AttentionShape { dim: 7, ..shape };
    assert!(
        b.favor(&opts, &bad_dim, &w, &q, &q, &v, &mut out).is_err(),
        "dim"
    );
    let wide = AttentionShape {
        value_dim: 300,
        ..shape
    };
    let (v300, mut out300) = (mat(300), Mat::<f32>::poisoned(6, 300, 300, 0));
    assert!(
        b.favor(&opts, &wide, &w, &q, &q, &v300, &mut out300)
            .is_err(),
        "value_dim"
    );
    let nan_guard = Favor {
        guard: f64::NAN,
        ..opts
    };
    assert!(
        b.favor(&nan_guard, &shape, &w, &q, &q, &v, &mut out)
            .is_err(),
        "guard"
    );
    let neg_eps = Favor { eps: -1.0, ..opts };
    assert!(
        b.favor(&neg_eps, &shape, &w, &q, &q, &v, &mut out).is_err(),
        "eps"
    );
    assert!(
        out.to_f64().iter().all(|v| v.is_nan()),
        "nothing launched on errors"
    );
}

#[cfg(feature = "emulator")]
#[test]
fn emu_favor_matches_the_reference() {
    favor_cases(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[cfg(feature = "emulator")]
#[test]
fn emu_favor_errors_are_values() {
    favor_errors(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[test]
fn gpu_favor_matches_the_reference() {
    if let Some((gpu, stream)) = common::gpu("gpu_favor_matches_the_reference") {
        favor_cases(&Device { gpu, stream });
    }
}

#[test]
fn gpu_favor_errors_are_values() {
    if let Some((gpu, stream)) = common::gpu("gpu_favor_errors_are_values") {
        favor_errors(&Device { gpu, stream });
    }
}

/// The feature-map gradient against [`features_backward`] (f64, its own shift). Tolerance per
/// entry: one ulp of T plus 2^-24 (d + 8) Σ_i |g_ri| (s |w_ik| + 2 c s² |x_rk|) (+ the same
/// relative part for the shift's f32 error).
fn check_features_backward<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    stabilizer: Stabilizer,
    rows: usize,
    d: usize,
    m: usize,
) {
    let map = FeatureMap {
        kernel: if rows.is_multiple_of(2) {
            KernelKind::Softmax
        } else {
            KernelKind::Gaussian
        },
        stabilizer,
        eps: 1e-4,
        input_scale: (d as f64).powf(-0.25),
    };
    let w = ProjectionSpec::new(Coupling::Orthogonal, m, d, rng.seed)
        .unwrap()
        .draw(4);
    let w32 = Projection {
        w: w.to_f32().iter().map(|&v| f64::from(v)).collect(),
        ..w.clone()
    };
    let x = Mat::<T>::from_fn(rows, d, d + rng.below(3), rng.below(3), |_, _| {
        0.8 * rng.normal()
    });
    let dphi = Mat::<T>::from_fn(rows, m, m + rng.below(3), rng.below(3), |_, _| rng.normal());
    let mut phi = Mat::<T>::poisoned(rows, m, m, 0);
    let mut shift = vec![f32::NAN; rows];
    b.features(&map, &w, &x, &mut phi, &mut shift).unwrap();
    let mut dx = Mat::<T>::poisoned(rows, d, d + rng.below(3), rng.below(3));
    let what = format!(
        "seed {} {} {stabilizer:?} rows={rows} d={d} m={m}",
        rng.seed,
        T::DTYPE.name()
    );
    b.features_backward(&map, &w, &x, &shift, &dphi, &mut dx)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(dx.padding_untouched(), "{what}: wrote outside the rows");
    let (xf, gf) = (x.to_f64(), dphi.to_f64());
    let want = features_backward(&map, &w32, &xf, rows, &gf).unwrap();
    let f = features(&map, &w32, &xf, rows).unwrap();
    let got = dx.to_f64();
    let (s, c) = (map.input_scale, map.kernel.norm_coefficient());
    let scale = (m as f64).powf(-0.5);
    for r in 0..rows {
        for k in 0..d {
            let bound: f64 = (0..m)
                .map(|i| {
                    let e = f.phi[r * m + i] - scale * map.eps;
                    (gf[r * m + i] * e).abs()
                        * (s * w32.row(i)[k].abs() + 2.0 * c * s * s * xf[r * d + k].abs())
                })
                .sum();
            let want_v = want[r * d + k];
            let tol =
                common::ulp(T::DTYPE, want_v) + 2f64.powi(-24) * (d as f64 + 8.0) * bound * 4.0;
            assert!(
                (got[r * d + k] - want_v).abs() <= tol,
                "{what}: dx[{r}][{k}] = {} vs {want_v} (tol {tol:.2e})",
                got[r * d + k]
            );
        }
    }
}

fn features_backward_cases<B: Backend>(b: &B) {
    let mut rng = Rng::new();
    for (rows, d, m) in [(1, 1, 1), (9, 16, 37), (20, 70, 300), (16, 64, 256)] {
        for stabilizer in [
            Stabilizer::None,
            Stabilizer::Row,
            Stabilizer::Group { rows },
        ] {
            check_features_backward::<f32, B>(b, &mut rng, stabilizer, rows, d, m);
        }
    }
    check_features_backward::<bf16, B>(b, &mut rng, Stabilizer::Row, 12, 32, 64);
    check_features_backward::<f16, B>(b, &mut rng, Stabilizer::Row, 12, 32, 64);
    // Errors: m beyond the shared-memory slices, mismatched dphi.
    let w = ProjectionSpec::new(Coupling::Iid, 2000, 4, 1)
        .unwrap()
        .draw(0);
    let map = FeatureMap::unbiased(KernelKind::Softmax);
    let x = Mat::<f32>::from_fn(2, 4, 4, 0, |_, _| 0.1);
    let g = Mat::<f32>::from_fn(2, 2000, 2000, 0, |_, _| 0.1);
    let mut dx = Mat::<f32>::poisoned(2, 4, 4, 0);
    assert!(
        b.features_backward(&map, &w, &x, &[0.0; 2], &g, &mut dx)
            .is_err(),
        "m = 2000"
    );
    let w = ProjectionSpec::new(Coupling::Iid, 8, 4, 1).unwrap().draw(0);
    assert!(
        b.features_backward(&map, &w, &x, &[0.0; 2], &g, &mut dx)
            .is_err(),
        "dphi shape"
    );
    assert!(
        dx.to_f64().iter().all(|v| v.is_nan()),
        "nothing launched on errors"
    );
}

#[cfg(feature = "emulator")]
#[test]
fn emu_feature_gradients_match_the_reference() {
    features_backward_cases(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[test]
fn gpu_feature_gradients_match_the_reference() {
    if let Some((gpu, stream)) = common::gpu("gpu_feature_gradients_match_the_reference") {
        features_backward_cases(&Device { gpu, stream });
    }
}

// ---- FAVOR+ gradients on the emulator and the GPU ---------------------------------------------

/// The size of each FAVOR+ gradient entry before cancellation: the backward formulas of
/// [`favor_attention_backward`] with every term replaced by its absolute value (G_ij =
/// (|dout_i·v_j| + |dout_i·out_i|)/den_i for the weights, |w| and |x| in the feature-map
/// gradient). A rounding-error bound is a multiple of it, even where the gradient itself
/// cancels to nearly zero (one position: out = v whatever q and k).
#[allow(clippy::too_many_arguments)]
fn favor_gradient_magnitudes(
    opts: &Favor,
    shape: &AttentionShape,
    w: &Projection,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dout: &[f64],
) -> [Vec<f64>; 3] {
    let (l, d, dv, m) = (shape.len, shape.dim, shape.value_dim, w.features);
    let rows = shape.heads * l;
    let fq = features(&opts.query_map(), w, q, rows).unwrap().phi;
    let fk = features(&opts.key_map(l), w, k, rows).unwrap().phi;
    let out = favor_attention(opts, shape, w, q, k, v).unwrap();
    let (mut mfq, mut mfk, mut mv) = (
        vec![0.0; rows * m],
        vec![0.0; rows * m],
        vec![0.0; rows * dv],
    );
    let row = |a: &[f64], r: usize, n: usize| a[r * n..(r + 1) * n].to_vec();
    for h in 0..shape.heads {
        for i in h * l..(h + 1) * l {
            let last = if opts.causal { i + 1 } else { (h + 1) * l };
            let weights: Vec<f64> = (h * l..last)
                .map(|j| dot(&row(&fq, i, m), &row(&fk, j, m)))
                .collect();
            let den = weights.iter().sum::<f64>() + opts.guard;
            let (di, oi) = (row(dout, i, dv), row(&out, i, dv));
            for (n, j) in (h * l..last).enumerate() {
                let g = (dot(&di, &row(v, j, dv)).abs() + dot(&di, &oi).abs()) / den;
                for t in 0..m {
                    mfq[i * m + t] += g * fk[j * m + t];
                    mfk[j * m + t] += g * fq[i * m + t];
                }
                for c in 0..dv {
                    mv[j * dv + c] += weights[n] * di[c].abs() / den;
                }
            }
        }
    }
    let (s, c) = (opts.input_scale, 0.5);
    let input_side = |mf: &[f64], phi: &[f64], x: &[f64]| {
        let mut mx = vec![0.0; rows * d];
        for r in 0..rows {
            for t in 0..m {
                let g = mf[r * m + t] * phi[r * m + t];
                for kk in 0..d {
                    mx[r * d + kk] +=
                        g * (s * w.row(t)[kk].abs() + 2.0 * c * s * s * x[r * d + kk].abs());
                }
            }
        }
        mx
    };
    [input_side(&mfq, &fq, q), input_side(&mfk, &fk, k), mv]
}

/// The inputs of one FAVOR+ gradient case: Performer's input scale, eps and guard 1e-6, a
/// simplex W drawn from the seed, and q, k, v, dout of normals in rows with padded strides and
/// offsets; `what` names the case in messages.
struct FavorCase<T: Element> {
    shape: AttentionShape,
    opts: Favor,
    w: Projection,
    q: Mat<T>,
    k: Mat<T>,
    v: Mat<T>,
    dout: Mat<T>,
    what: String,
}

#[allow(clippy::too_many_arguments)]
fn favor_case<T: Element>(
    rng: &mut Rng,
    heads: usize,
    len: usize,
    dim: usize,
    value_dim: usize,
    m: usize,
    causal: bool,
) -> FavorCase<T> {
    let rows = heads * len;
    let w = ProjectionSpec::new(Coupling::Simplex, m, dim, rng.seed)
        .unwrap()
        .draw(5);
    let mut input = |cols: usize| {
        let stride = cols + rng.below(3);
        let offset = rng.below(3);
        Mat::<T>::from_fn(rows, cols, stride, offset, |_, _| rng.normal())
    };
    let (q, k, v, dout) = (input(dim), input(dim), input(value_dim), input(value_dim));
    FavorCase {
        shape: AttentionShape {
            heads,
            len,
            dim,
            value_dim,
        },
        opts: performer(dim, causal),
        w,
        q,
        k,
        v,
        dout,
        what: format!(
            "seed {} {} heads={heads} len={len} dim={dim} dv={value_dim} m={m} causal={causal}",
            rng.seed,
            T::DTYPE.name()
        ),
    }
}

/// One FAVOR+ gradient case against [`favor_attention_backward`] (f64 on the rounded inputs, W
/// rounded to f32). Tolerance per entry: one ulp of T plus 2^-22 (len + value_dim + m + dim +
/// 16) times the entry's size before cancellation ([`favor_gradient_magnitudes`]): every stage
/// is an f32 sum of at most that many terms. Returns the worst error over that size.
#[allow(clippy::too_many_arguments)]
fn check_favor_backward<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    heads: usize,
    len: usize,
    dim: usize,
    value_dim: usize,
    m: usize,
    causal: bool,
) -> f64 {
    let FavorCase {
        shape,
        opts,
        w,
        q,
        k,
        v,
        dout,
        what,
    } = favor_case::<T>(rng, heads, len, dim, value_dim, m, causal);
    let rows = heads * len;
    let w32 = Projection {
        w: w.to_f32().iter().map(|&v| f64::from(v)).collect(),
        ..w.clone()
    };
    let mut poisoned =
        |cols: usize| Mat::<T>::poisoned(rows, cols, cols + rng.below(3), rng.below(3));
    let (mut dq, mut dk, mut dv) = (poisoned(dim), poisoned(dim), poisoned(value_dim));
    b.favor_backward(
        &opts,
        &shape,
        &w,
        [&q, &k, &v],
        &dout,
        [&mut dq, &mut dk, &mut dv],
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (want_q, want_k, want_v) = favor_attention_backward(
        &opts,
        &shape,
        &w32,
        &q.to_f64(),
        &k.to_f64(),
        &v.to_f64(),
        &dout.to_f64(),
    )
    .unwrap();
    let mags = favor_gradient_magnitudes(
        &opts,
        &shape,
        &w32,
        &q.to_f64(),
        &k.to_f64(),
        &v.to_f64(),
        &dout.to_f64(),
    );
    let terms = (len + value_dim + m + dim + 16) as f64;
    let mut worst: f64 = 0.0;
    for ((name, got, want), mag) in [
        ("dq", &dq, want_q),
        ("dk", &dk, want_k),
        ("dv", &dv, want_v),
    ]
    .into_iter()
    .zip(&mags)
    {
        assert!(
            got.padding_untouched(),
            "{what}: {name} wrote outside the rows"
        );
        let cols = got.cols;
        for (i, ((g, w), size)) in got.to_f64().iter().zip(&want).zip(mag).enumerate() {
            let excess = (g - w).abs() - common::ulp(T::DTYPE, *w);
            worst = worst.max(excess / (size * terms * 2f64.powi(-24)));
            assert!(
                excess <= 2f64.powi(-22) * terms * size,
                "{what}: {name}[{}][{}] = {g} vs {w} (size before cancellation {size:.3e})",
                i / cols,
                i % cols
            );
        }
    }
    worst
}

fn favor_backward_cases<B: Backend>(b: &B) {
    let mut rng = Rng::new();
    let mut worst: f64 = 0.0;
    for causal in [false, true] {
        // Lengths around the 64-row segments and 16-row tiles; value_dim around the 32-column
        // lane slots and the 72-column tensor-core tasks (dv 72 and 100: two tasks, the
        // second of one and of 29 columns); m around the 16-feature k-steps.
        for (heads, len, dim, dv, m) in [
            (1, 1, 4, 1, 8),
            (2, 64, 8, 31, 16),
            (3, 65, 16, 32, 40),
            (1, 150, 8, 64, 130),
            (2, 129, 12, 5, 24),
            (2, 70, 8, 72, 20),
            (1, 80, 8, 100, 33),
        ] {
            worst = worst.max(check_favor_backward::<f32, B>(
                b, &mut rng, heads, len, dim, dv, m, causal,
            ));
        }
        check_favor_backward::<bf16, B>(b, &mut rng, 2, 100, 16, 16, 32, causal);
        check_favor_backward::<f16, B>(b, &mut rng, 2, 100, 16, 16, 32, causal);
    }
    println!("FAVOR+ gradients, f32: worst error = {worst:.3} x 2^-24 (terms) (size); bound 4");
}

fn favor_backward_errors<B: Backend>(b: &B) {
    let w = ProjectionSpec::new(Coupling::Simplex, 16, 8, 1)
        .unwrap()
        .draw(0);
    let shape = AttentionShape {
        heads: 2,
        len: 3,
        dim: 8,
        value_dim: 4,
    };
    let opts = Favor {
        input_scale: 1.0,
        eps: 0.0,
        guard: 0.0,
        causal: true,
    };
    let mat = |rows, cols| Mat::<f32>::from_fn(rows, cols, cols, 0, |_, _| 0.1);
    let (q, v) = (mat(6, 8), mat(6, 4));
    let nan = |rows, cols| Mat::<f32>::poisoned(rows, cols, cols, 0);
    let (mut dq, mut dk, mut dv) = (nan(6, 8), nan(6, 8), nan(6, 4));
    let short = mat(5, 4);
    assert!(
        b.favor_backward(
            &opts,
            &shape,
            &w,
            [&q, &q, &v],
            &short,
            [&mut dq, &mut dk, &mut dv]
        )
        .is_err(),
        "dout rows"
    );
    let mut dq_wide = nan(6, 9);
    assert!(
        b.favor_backward(
            &opts,
            &shape,
            &w,
            [&q, &q, &v],
            &v,
            [&mut dq_wide, &mut dk, &mut dv]
        )
        .is_err(),
        "dq columns"
    );
    let mut dv_short = nan(5, 4);
    assert!(
        b.favor_backward(
            &opts,
            &shape,
            &w,
            [&q, &q, &v],
            &v,
            [&mut dq, &mut dk, &mut dv_short]
        )
        .is_err(),
        "dv rows"
    );
    let neg_guard = Favor {
        guard: -1.0,
        ..opts
    };
    assert!(
        b.favor_backward(
            &neg_guard,
            &shape,
            &w,
            [&q, &q, &v],
            &v,
            [&mut dq, &mut dk, &mut dv]
        )
        .is_err(),
        "guard"
    );
    let big = ProjectionSpec::new(Coupling::Iid, 2000, 8, 1)
        .unwrap()
        .draw(0);
    assert!(
        b.favor_backward(
            &opts,
            &shape,
            &big,
            [&q, &q, &v],
            &v,
            [&mut dq, &mut dk, &mut dv]
        )
        .is_err(),
        "m = 2000"
    );
    for (name, g) in [("dq", &dq), ("dk", &dk), ("dv", &dv)] {
        assert!(
            g.to_f64().iter().all(|v| v.is_nan()),
            "{name}: nothing launched on errors"
        );
    }
}

/// A training step from saved forward stages (the gradient stages read the forward's
/// features, shifts and states where it left them) gives the same bits as the forward and the
/// backward that recomputes them: outputs and gradients, causal or not, f32 and bf16.
fn favor_saved_forward_cases<B: Backend>(b: &B) {
    let mut rng = Rng::new();
    for causal in [false, true] {
        for (heads, len, dim, value_dim, m) in [(2, 65, 8, 31, 16), (1, 130, 16, 5, 40)] {
            check_favor_saved::<f32, B>(b, &mut rng, heads, len, dim, value_dim, m, causal);
        }
        check_favor_saved::<bf16, B>(b, &mut rng, 2, 100, 16, 16, 32, causal);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_favor_saved<T: Element, B: Backend>(
    b: &B,
    rng: &mut Rng,
    heads: usize,
    len: usize,
    dim: usize,
    value_dim: usize,
    m: usize,
    causal: bool,
) {
    let FavorCase {
        shape,
        opts,
        w,
        q,
        k,
        v,
        dout,
        what,
    } = favor_case::<T>(rng, heads, len, dim, value_dim, m, causal);
    let rows = heads * len;
    let poisoned = |cols: usize| Mat::<T>::poisoned(rows, cols, cols, 0);
    let mut out = poisoned(value_dim);
    let (mut dq, mut dk, mut dv) = (poisoned(dim), poisoned(dim), poisoned(value_dim));
    b.favor(&opts, &shape, &w, &q, &k, &v, &mut out)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    b.favor_backward(
        &opts,
        &shape,
        &w,
        [&q, &k, &v],
        &dout,
        [&mut dq, &mut dk, &mut dv],
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut out2 = poisoned(value_dim);
    let (mut dq2, mut dk2, mut dv2) = (poisoned(dim), poisoned(dim), poisoned(value_dim));
    b.favor_training_step(
        &opts,
        &shape,
        &w,
        [&q, &k, &v],
        &dout,
        &mut out2,
        [&mut dq2, &mut dk2, &mut dv2],
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    for (name, want, got) in [
        ("out", &out, &out2),
        ("dq", &dq, &dq2),
        ("dk", &dk, &dk2),
        ("dv", &dv, &dv2),
    ] {
        let (want, got) = (want.to_f64(), got.to_f64());
        assert!(
            want.iter().all(|v| v.is_finite()),
            "{what}: {name} not finite"
        );
        for (i, (a, g)) in want.iter().zip(&got).enumerate() {
            assert!(
                a.to_bits() == g.to_bits(),
                "{what}: {name}[{i}] = {g:e} from the saved forward, {a:e} recomputed"
            );
        }
    }
}

#[cfg(feature = "emulator")]
#[test]
fn emu_favor_saved_forward_gives_the_same_bits() {
    favor_saved_forward_cases(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[test]
fn gpu_favor_saved_forward_gives_the_same_bits() {
    if let Some((gpu, stream)) = common::gpu("gpu_favor_saved_forward_gives_the_same_bits") {
        favor_saved_forward_cases(&Device { gpu, stream });
    }
}

#[test]
fn gpu_favor_saved_forward_refuses_another_call_or_a_reused_workspace() {
    use spherekit::simplex::gpu::DeviceProjection;
    use spherekit::{Rows, RowsMut, Workspace};
    let Some((gpu, s)) =
        common::gpu("gpu_favor_saved_forward_refuses_another_call_or_a_reused_workspace")
    else {
        return;
    };
    let shape = AttentionShape {
        heads: 2,
        len: 40,
        dim: 8,
        value_dim: 4,
    };
    let opts = Favor {
        input_scale: 0.5,
        eps: 1e-6,
        guard: 1e-6,
        causal: true,
    };
    let w = ProjectionSpec::new(Coupling::Simplex, 16, 8, 3)
        .unwrap()
        .draw(0);
    let wd = DeviceProjection::upload(&s, &w).unwrap();
    let up = |n: usize| s.clone_htod(&vec![0.25f32; n]).unwrap();
    let (q, k, v, v2, dout) = (up(640), up(640), up(320), up(320), up(320));
    let (mut out, mut dq, mut dk, mut dv) = (up(320), up(640), up(640), up(320));
    fn rows(d: &cudarc::driver::CudaSlice<f32>, cols: usize) -> Rows<'_, f32> {
        Rows::new(d.as_view(), 80, cols).unwrap()
    }
    let mut ws = Workspace::new();
    let saved = opts
        .forward_saved(
            &gpu,
            &s,
            &shape,
            &wd,
            &rows(&q, 8),
            &rows(&k, 8),
            &rows(&v, 4),
            &mut RowsMut::new(out.as_view_mut(), 80, 4).unwrap(),
            &mut ws,
        )
        .unwrap();
    let mut backward = |v: &cudarc::driver::CudaSlice<f32>, ws: &mut Workspace, opts: &Favor| {
        opts.backward_saved(
            &gpu,
            &s,
            &saved,
            &shape,
            &wd,
            &rows(&q, 8),
            &rows(&k, 8),
            &rows(v, 4),
            &rows(&dout, 4),
            &mut RowsMut::new(dq.as_view_mut(), 80, 8).unwrap(),
            &mut RowsMut::new(dk.as_view_mut(), 80, 8).unwrap(),
            &mut RowsMut::new(dv.as_view_mut(), 80, 4).unwrap(),
            ws,
        )
    };
    let saved_error = |r: spherekit::Result<()>| {
        matches!(
            r,
            Err(spherekit::Error::InvalidParameter { name: "saved", .. })
        )
    };
    assert!(saved_error(backward(&v2, &mut ws, &opts)), "another v");
    let acausal = Favor {
        causal: false,
        ..opts
    };
    assert!(
        saved_error(backward(&v, &mut ws, &acausal)),
        "other options"
    );
    assert!(
        saved_error(backward(&v, &mut Workspace::new(), &opts)),
        "another workspace"
    );
    assert!(backward(&v, &mut ws, &opts).is_ok(), "the saved call");
    // That backward used the workspace: the saved stages are no longer vouched for.
    assert!(saved_error(backward(&v, &mut ws, &opts)), "a second use");
}

#[cfg(feature = "emulator")]
#[test]
fn emu_favor_gradients_match_the_reference() {
    favor_backward_cases(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[cfg(feature = "emulator")]
#[test]
fn emu_favor_gradient_errors_are_values() {
    favor_backward_errors(&Emu(spherekit::emulator::Emulator::new(3)));
}

#[test]
fn gpu_favor_gradients_match_the_reference() {
    if let Some((gpu, stream)) = common::gpu("gpu_favor_gradients_match_the_reference") {
        favor_backward_cases(&Device { gpu, stream });
    }
}

#[test]
fn gpu_favor_gradient_errors_are_values() {
    if let Some((gpu, stream)) = common::gpu("gpu_favor_gradient_errors_are_values") {
        favor_backward_errors(&Device { gpu, stream });
    }
}

// ---- kernel estimates for pairs -------------------------------------------------------------

/// log K̂ on the target against `cpu::estimate_pairs` (f64, on the rounded inputs and W rounded
/// to f32), for both kernels and every storage type, with a NaN pair and pairs whose K̂ is far
/// outside f32's range (|x| large: log K̂ is still finite). Tolerance on log K̂: 2e-5 absolute
/// plus 2e-6 of the largest exponent's magnitude (f32 dot products and exponent). Then the
/// errors: column and row mismatches, a short `out` (nothing written), and zero pairs.
fn estimate_cases<B: Backend>(b: &B) {
    fn one<T: Element, B: Backend>(b: &B, rng: &mut Rng, kernel: KernelKind, d: usize, m: usize) {
        let pairs = 70;
        let w = ProjectionSpec::new(Coupling::Simplex, m, d, rng.seed)
            .unwrap()
            .draw(3);
        let w32 = Projection {
            w: w.to_f32().iter().map(|&v| f64::from(v)).collect(),
            ..w.clone()
        };
        // Row r has norm about 0.5 + r / 10: pair 60 and on have |x|^2 near 40, so K̂ is
        // about e^-40 and smaller (the Gaussian kernel).
        let scale = |r: usize| (0.5 + r as f64 / 10.0) / (d as f64).sqrt();
        let (xs, ys) = (d + rng.below(3), d + rng.below(3));
        let x = Mat::<T>::from_fn(pairs, d, xs, rng.below(2), |r, _| scale(r) * rng.normal());
        let mut y = Mat::<T>::from_fn(pairs, d, ys, rng.below(2), |r, _| scale(r) * rng.normal());
        let nan_pair = 17;
        y.view_mut()[nan_pair * ys + 3] = T::from_f64(f64::NAN);
        let mut out = vec![f32::NAN; pairs];
        b.log_estimates(kernel, &w, &x, &y, &mut out)
            .unwrap_or_else(|e| panic!("{kernel:?} d={d} m={m}: {e}"));
        let (xf, yf) = (x.to_f64(), y.to_f64());
        let want = estimate_pairs(kernel, &w32, &xf, &yf, pairs).unwrap();
        for p in 0..pairs {
            let what = format!("{} {kernel:?} d={d} m={m} pair {p}", T::DTYPE.name());
            if p == nan_pair {
                assert!(out[p].is_nan(), "{what}: {} for a NaN pair", out[p]);
                continue;
            }
            let lw = want[p].ln();
            let (xp, yp) = (&xf[p * d..(p + 1) * d], &yf[p * d..(p + 1) * d]);
            let c = kernel.norm_coefficient();
            let size = c * (dot(xp, xp) + dot(yp, yp)) + lw.abs();
            let err = (f64::from(out[p]) - lw).abs();
            assert!(
                err <= 2e-5 + 2e-6 * size,
                "{what}: {} vs {lw} (err {err:e})",
                out[p]
            );
        }
    }
    let mut rng = Rng::new();
    for kernel in [KernelKind::Softmax, KernelKind::Gaussian] {
        one::<f32, B>(b, &mut rng, kernel, 16, 40);
        one::<bf16, B>(b, &mut rng, kernel, 33, 70);
        one::<f16, B>(b, &mut rng, kernel, 8, 3);
    }

    let w = ProjectionSpec::new(Coupling::Iid, 8, 4, 1).unwrap().draw(0);
    let x = Mat::<f32>::from_fn(5, 4, 4, 0, |r, c| (r + c) as f64 / 10.0);
    let x3 = Mat::<f32>::from_fn(5, 3, 3, 0, |_, _| 0.1);
    let x6 = Mat::<f32>::from_fn(6, 4, 4, 0, |_, _| 0.1);
    let soft = KernelKind::Softmax;
    let mut out = vec![f32::NAN; 5];
    assert!(b.log_estimates(soft, &w, &x3, &x, &mut out).is_err());
    assert!(b.log_estimates(soft, &w, &x, &x3, &mut out).is_err());
    assert!(b.log_estimates(soft, &w, &x, &x6, &mut out).is_err());
    assert!(b.log_estimates(soft, &w, &x, &x, &mut out[..4]).is_err());
    assert!(out.iter().all(|v| v.is_nan()), "an error wrote nothing");
    let empty = Mat::<f32> {
        data: vec![],
        rows: 0,
        cols: 4,
        stride: 4,
        offset: 0,
    };
    let mut none: [f32; 0] = [];
    assert!(
        b.log_estimates(soft, &w, &empty, &empty, &mut none)
            .is_err(),
        "zero pairs: a clear error (row views are never empty)"
    );
}

#[cfg(feature = "emulator")]
#[test]
fn emu_estimates_match_the_reference() {
    estimate_cases(&Emu(spherekit::emulator::Emulator::new(2)));
}

#[test]
fn gpu_estimates_match_the_reference() {
    if let Some((gpu, stream)) = common::gpu("gpu_estimates_match_the_reference") {
        estimate_cases(&Device { gpu, stream });
    }
}
