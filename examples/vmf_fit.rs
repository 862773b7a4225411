//! Fits von Mises-Fisher distributions in 2048, 8192 and 32768 dimensions: draws unit vectors
//! from a vMF with a known κ (spherekit::bessel::vmf), forms the mean resultant length R̄ of the
//! sample, and recovers κ̂ with the maximum-likelihood solver A_d(κ̂) = R̄ — on the GPU when there
//! is one, on the CPU otherwise — where SciPy's ive underflows or returns NaN at these orders.
//!
//! `cargo run --release --example vmf_fit`
//!
//! With n draws the estimate has a statistical error of order 1/√n (and R̄ a small upward bias
//! from the noise orthogonal to μ, (1 − A²)/(2nA)); the example reports both and fails if κ̂ is
//! further from κ than a few such standard errors.

use rand::SeedableRng;
use rand::rngs::StdRng;
use spherekit::Gpu;
use spherekit::bessel::vmf::VonMisesFisher;
use spherekit::bessel::{Function, Orders, cpu};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let dims = [2048usize, 8192, 32768];
    let n = 4000;
    let mut rng = StdRng::seed_from_u64(2048);
    let mut rbars = Vec::new();
    let mut truth = Vec::new();
    for &d in &dims {
        let kappa = 0.75 * d as f64;
        let mut mu = vec![0.0; d];
        mu[d / 3] = 1.0;
        let vmf = VonMisesFisher::new(&mu, kappa)?;
        let mut sum = vec![0.0; d];
        let mut x = vec![0.0; d];
        for _ in 0..n {
            vmf.sample(&mut rng, &mut x)?;
            for (s, v) in sum.iter_mut().zip(&x) {
                *s += v;
            }
        }
        let rbar = sum.iter().map(|v| v * v).sum::<f64>().sqrt() / n as f64;
        rbars.push(rbar);
        truth.push(kappa);
    }
    let orders: Vec<f64> = dims.iter().map(|&d| d as f64).collect();
    let mut kappa_hat = vec![0.0; dims.len()];
    let device = match Gpu::open(0) {
        Ok(gpu) => {
            let stream = gpu.context().new_stream()?;
            let (dr, dd) = (stream.clone_htod(&rbars)?, stream.clone_htod(&orders)?);
            let mut out = stream.alloc_zeros::<f64>(dims.len())?;
            let view = dd.slice(..);
            spherekit::bessel::gpu::evaluate(
                &gpu,
                &stream,
                Function::VmfKappaMle,
                spherekit::bessel::gpu::DeviceOrders::Each(&view),
                &dr.slice(..),
                &mut out.slice_mut(..),
            )?;
            stream.memcpy_dtoh(&out, &mut kappa_hat)?;
            stream.synchronize()?;
            format!("GPU ({})", gpu.info().name)
        }
        Err(e) => {
            spherekit::bessel::evaluate_cpu(
                Function::VmfKappaMle,
                Orders::Each(&orders),
                &rbars,
                &mut kappa_hat,
            )?;
            format!("CPU (no GPU: {e})")
        }
    };
    println!("κ̂ solved on the {device}; {n} draws per dimension");
    println!(
        "{:>6} {:>10} {:>12} {:>12} {:>10} {:>10}",
        "d", "κ", "R̄", "κ̂", "rel. err", "≈ std err"
    );
    let mut ok = true;
    for (i, &d) in dims.iter().enumerate() {
        let (k, kh, rbar) = (truth[i], kappa_hat[i], rbars[i]);
        // Standard error of κ̂: that of R̄ (√((1 − A² − (d−1)A/κ... ) ≈ √(A′/(n)) for the
        // component along μ) mapped through dκ/dR̄ = 1/A′, plus the orthogonal-noise bias.
        let a = cpu::vmf_mean_resultant(d as f64, k);
        let ap = cpu::vmf_mean_resultant_derivative(d as f64, k);
        let se_rbar = (ap / n as f64).sqrt();
        let bias_rbar = (1.0 - a * a) / (2.0 * n as f64 * a);
        let se = (se_rbar + bias_rbar) / ap / k;
        let err = (kh - k) / k;
        println!("{d:>6} {k:>10.1} {rbar:>12.8} {kh:>12.3} {err:>10.2e} {se:>10.2e}");
        ok &= err.abs() <= 5.0 * se;
    }
    if !ok {
        return Err("κ̂ is further from κ than five standard errors".into());
    }
    Ok(())
}
