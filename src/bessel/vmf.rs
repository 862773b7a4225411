//! Sampling from the von Mises-Fisher distribution on the unit sphere S^{d−1} ⊂ R^d, with
//! density C_d(κ) exp(κ μᵀx) (Wood 1994: the component w = μᵀx by rejection from a transformed
//! Beta, the rest uniform on the orthogonal sphere).

use rand::{Rng, RngExt};
use rand_distr::{Beta, Distribution, StandardNormal};

use crate::error::{Error, Result};

/// A vMF distribution ready to sample: mean direction μ (unit, length d ≥ 2) and κ ≥ 0.
#[derive(Debug, Clone)]
pub struct VonMisesFisher {
    mu: Vec<f64>,
    kappa: f64,
    b: f64,
    x0: f64,
    c: f64,
    beta: Option<Beta<f64>>,
}

impl VonMisesFisher {
    /// Prepares sampling. `mu` is normalized here.
    ///
    /// Errors: d < 2, a zero or non-finite μ, κ negative or non-finite.
    pub fn new(mu: &[f64], kappa: f64) -> Result<Self> {
        let d = mu.len();
        if d < 2 {
            return Err(Error::shape(format!("a vMF needs dimension >= 2, got {d}")));
        }
        if !(kappa.is_finite() && kappa >= 0.0) {
            return Err(Error::param(
                "kappa",
                format!("{kappa} is not a finite number >= 0"),
            ));
        }
        let norm = mu.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return Err(Error::param("mu", "must be a finite nonzero vector"));
        }
        let mu: Vec<f64> = mu.iter().map(|v| v / norm).collect();
        let m = (d - 1) as f64;
        // b = (d−1) / (2κ + √(4κ² + (d−1)²)), the form without cancellation.
        let b = m / (2.0 * kappa + (4.0 * kappa * kappa + m * m).sqrt());
        let x0 = (1.0 - b) / (1.0 + b);
        let c = kappa * x0 + m * (1.0 - x0 * x0).ln();
        let beta = Beta::new(0.5 * m, 0.5 * m).ok();
        Ok(VonMisesFisher {
            mu,
            kappa,
            b,
            x0,
            c,
            beta,
        })
    }

    /// The dimension d.
    pub fn dim(&self) -> usize {
        self.mu.len()
    }

    /// Draws one unit vector into `out` (length d).
    ///
    /// Errors: `out` of another length.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) -> Result<()> {
        let d = self.mu.len();
        if out.len() != d {
            return Err(Error::shape(format!(
                "`out` has {} elements for dimension {d}",
                out.len()
            )));
        }
        let m = (d - 1) as f64;
        let w = match &self.beta {
            Some(beta) => loop {
                let z = beta.sample(rng);
                let w = (1.0 - (1.0 + self.b) * z) / (1.0 - (1.0 - self.b) * z);
                let u: f64 = rng.random();
                if self.kappa * w + m * (1.0 - self.x0 * w).ln() - self.c >= u.ln() {
                    break w;
                }
            },
            None => 1.0,
        };
        // A direction orthogonal to μ: a Gaussian vector with its μ component removed.
        for o in out.iter_mut() {
            *o = StandardNormal.sample(rng);
        }
        let along: f64 = out.iter().zip(&self.mu).map(|(a, b)| a * b).sum();
        for (o, m) in out.iter_mut().zip(&self.mu) {
            *o -= along * m;
        }
        let norm = out.iter().map(|v| v * v).sum::<f64>().sqrt();
        let scale = (1.0 - w * w).max(0.0).sqrt() / norm;
        for (o, m) in out.iter_mut().zip(&self.mu) {
            *o = w * m + scale * *o;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn samples_are_unit_vectors_with_the_right_mean_resultant() {
        // E[μᵀx] = A_d(κ): the sample mean of w must match within a few standard errors.
        let mut rng = StdRng::seed_from_u64(7);
        for (d, kappa) in [(3usize, 2.0), (10, 25.0), (64, 100.0), (1000, 400.0)] {
            let mut mu = vec![0.0; d];
            mu[1] = 1.0;
            let vmf = VonMisesFisher::new(&mu, kappa).unwrap();
            let n = 4000;
            let mut out = vec![0.0; d];
            let (mut sum, mut sum2) = (0.0, 0.0);
            for _ in 0..n {
                vmf.sample(&mut rng, &mut out).unwrap();
                let norm: f64 = out.iter().map(|v| v * v).sum::<f64>().sqrt();
                assert!((norm - 1.0).abs() < 1e-12, "unit length: {norm}");
                sum += out[1];
                sum2 += out[1] * out[1];
            }
            let mean = sum / n as f64;
            let se = ((sum2 / n as f64 - mean * mean) / n as f64).sqrt();
            let a = super::super::cpu::vmf_mean_resultant(d as f64, kappa);
            assert!(
                (mean - a).abs() < 5.0 * se,
                "d = {d}, κ = {kappa}: mean {mean} vs A_d = {a} (se {se})"
            );
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(VonMisesFisher::new(&[1.0], 1.0).is_err());
        assert!(VonMisesFisher::new(&[0.0, 0.0], 1.0).is_err());
        assert!(VonMisesFisher::new(&[1.0, 0.0], -1.0).is_err());
        assert!(VonMisesFisher::new(&[1.0, 0.0], f64::NAN).is_err());
        let v = VonMisesFisher::new(&[1.0, 0.0, 0.0], 1.0).unwrap();
        assert!(v.sample(&mut rand::rng(), &mut [0.0; 2]).is_err());
    }
}
