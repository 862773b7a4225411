//! Projection matrices W (m x d), drawn on the host from a seed.
//!
//! Every matrix is a stack of independent blocks. A block's rows are its directions scaled by
//! independent chi_d norms, so each row is marginally N(0, I_d) and every estimator built on
//! the rows is unbiased; the couplings differ only in how the directions of one block relate.
//!
//! Draws are reproducible: block b of draw `step` under `seed` depends on (seed, step, b) only,
//! through a SplitMix64 stream defined here (not a library generator whose sequence may change
//! between versions). Growing m appends blocks and leaves the earlier ones unchanged.

use crate::error::{Error, Result};

/// How the directions of one block are coupled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coupling {
    /// Independent Gaussian rows (no coupling; blocks of one row).
    Iid,
    /// Orthogonal random features (Yu et al. 2016): d orthogonal directions per block.
    Orthogonal,
    /// Simplex random features (Reid et al. 2023): d unit directions per block with pairwise
    /// cosine −1/(d−1), a regular simplex in a (d−1)-dimensional subspace, rotated at random.
    Simplex,
    /// SimRF+ (Reid et al. 2023): the simplex directions refined for the block's drawn norms by
    /// five sweeps of coordinate descent on |Σ n_i s_i|² (s_i ← −r_i/|r_i| with
    /// r_i = Σ_{j≠i} n_j s_j), then rotated. Drawn per block.
    SimplexPlus,
    /// d + 1 directions per block forming a full regular simplex in R^d (pairwise cosine
    /// −1/d). Not in the paper: at equal m its exact MSE is a few percent below
    /// [`Coupling::Simplex`] (see [`super::cpu::exact_mse`] and tests/simplex.rs).
    FullSimplex,
}

/// The random rotation applied to each block's directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotation {
    /// Haar-distributed: Householder QR of a Gaussian d x d matrix with Mezzadri's sign fix
    /// (Q's columns multiplied by the signs of R's diagonal). O(d³) per block.
    Haar,
    /// Three stages of a normalized Hadamard matrix times a random ±1 diagonal,
    /// R = (H D₃)(H D₂)(H D₁) / d^{3/2}; d must be a power of two. O(d² log d) per block to
    /// materialize; exactly orthogonal but only approximately Haar (a slight bias remains).
    Hadamard,
}

/// Whether a Householder QR applies Mezzadri's sign fix. Only [`SignFix::Applied`] gives a
/// Haar rotation; [`SignFix::Omitted`] exists to show the bias it causes (Performer's code
/// omits it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignFix {
    /// Q's columns are multiplied by sign(diag R): Haar-distributed.
    Applied,
    /// Q as Householder QR returns it: Q's first column always has a negative first entry.
    Omitted,
}

/// What to draw: the coupling, rotation, sizes and seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionSpec {
    /// How directions of a block are coupled.
    pub coupling: Coupling,
    /// The rotation of each block (ignored by [`Coupling::Iid`]).
    pub rotation: Rotation,
    /// m, the number of random features (rows of W).
    pub features: usize,
    /// d, the input dimension (columns of W).
    pub dim: usize,
    /// The seed; with the step it fixes every draw.
    pub seed: u64,
}

/// A drawn projection matrix, m x d row-major in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Rows (features), m.
    pub features: usize,
    /// Columns (input dimension), d.
    pub dim: usize,
    /// The m x d entries, row-major.
    pub w: Vec<f64>,
}

impl Projection {
    /// Row i (feature i's vector w_i).
    pub fn row(&self, i: usize) -> &[f64] {
        &self.w[i * self.dim..(i + 1) * self.dim]
    }

    /// The entries rounded to f32, as the GPU kernels take them.
    pub fn to_f32(&self) -> Vec<f32> {
        self.w.iter().map(|&v| v as f32).collect()
    }
}

impl ProjectionSpec {
    /// A spec with a Haar rotation. Errors: m = 0, d = 0, and d < 2 for the simplex couplings
    /// (a simplex of d directions needs d ≥ 2).
    pub fn new(coupling: Coupling, features: usize, dim: usize, seed: u64) -> Result<Self> {
        Self {
            coupling,
            rotation: Rotation::Haar,
            features,
            dim,
            seed,
        }
        .validated()
    }

    /// The same spec with another rotation (validated again).
    pub fn with_rotation(self, rotation: Rotation) -> Result<Self> {
        Self { rotation, ..self }.validated()
    }

    fn validated(self) -> Result<Self> {
        if self.features == 0 {
            return Err(Error::param("features", "m must be at least 1"));
        }
        if self.dim == 0 {
            return Err(Error::param("dim", "d must be at least 1"));
        }
        if matches!(self.coupling, Coupling::Simplex | Coupling::SimplexPlus) && self.dim < 2 {
            return Err(Error::param("dim", "simplex couplings need d >= 2"));
        }
        if self.rotation == Rotation::Hadamard
            && self.coupling != Coupling::Iid
            && !self.dim.is_power_of_two()
        {
            return Err(Error::param(
                "rotation",
                format!(
                    "the Hadamard rotation needs d a power of two, not {}",
                    self.dim
                ),
            ));
        }
        Ok(self)
    }

    /// Rows per independent block: 1 (iid), d, or d + 1 (full simplex).
    pub fn block_rows(&self) -> usize {
        match self.coupling {
            Coupling::Iid => 1,
            Coupling::FullSimplex => self.dim + 1,
            _ => self.dim,
        }
    }

    /// Draw number `step` (for redrawing every N training steps, pass step / N). Block b of
    /// the draw uses the stream (seed, step, b); the last block is truncated to m rows.
    pub fn draw(&self, step: u64) -> Projection {
        let (m, d) = (self.features, self.dim);
        let b = self.block_rows();
        let mut w = Vec::with_capacity(m.div_ceil(b) * b * d);
        for block in 0..m.div_ceil(b) {
            let mut rng = Stream::new(self.seed, step, block as u64);
            w.extend(self.block(&mut rng));
        }
        w.truncate(m * d);
        Projection {
            features: m,
            dim: d,
            w,
        }
    }

    /// One block, `block_rows() x d` row-major.
    fn block(&self, rng: &mut Stream) -> Vec<f64> {
        let d = self.dim;
        if self.coupling == Coupling::Iid {
            return (0..d).map(|_| rng.normal()).collect();
        }
        let rows = self.block_rows();
        let norms: Vec<f64> = (0..rows).map(|_| chi(rng, d)).collect();
        let directions = match self.coupling {
            Coupling::Orthogonal => identity(d),
            Coupling::Simplex => simplex_directions(d),
            Coupling::SimplexPlus => refine_simplex(simplex_directions(d), &norms, d, 5),
            Coupling::FullSimplex => full_simplex_directions(d),
            Coupling::Iid => unreachable!("handled above"),
        };
        let r = match self.rotation {
            Rotation::Haar => haar_orthogonal(rng, d, SignFix::Applied),
            Rotation::Hadamard => hadamard_rotation(rng, d),
        };
        // Row i of the block: n_i (s_i^T R), i.e. W = diag(n) S R.
        let mut out = vec![0.0; rows * d];
        for i in 0..rows {
            let s = &directions[i * d..(i + 1) * d];
            let row = &mut out[i * d..(i + 1) * d];
            for (k, &sk) in s.iter().enumerate() {
                if sk != 0.0 {
                    for (o, &rk) in row.iter_mut().zip(&r[k * d..(k + 1) * d]) {
                        *o += sk * rk;
                    }
                }
            }
            row.iter_mut().for_each(|o| *o *= norms[i]);
        }
        out
    }
}

/// A SplitMix64 stream keyed by (seed, step, block), with uniform and Gaussian draws.
#[derive(Debug, Clone)]
pub struct Stream {
    state: u64,
    spare: Option<f64>,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Stream {
    /// The stream of block `block` of draw `step` under `seed`.
    pub fn new(seed: u64, step: u64, block: u64) -> Self {
        // Each key goes through the mixer before the next is folded in, so nearby keys give
        // unrelated streams.
        let mut s = seed;
        let mut key = splitmix(&mut s);
        key ^= step;
        let mut key = splitmix(&mut key);
        key ^= block;
        Stream {
            state: splitmix(&mut key),
            spare: None,
        }
    }

    /// Uniform on (0, 1): 53 random bits, never 0.
    pub fn uniform(&mut self) -> f64 {
        ((splitmix(&mut self.state) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard Gaussian (Box-Muller; the second value of each pair is kept for the next
    /// call).
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }

    /// A random sign, ±1.
    pub fn sign(&mut self) -> f64 {
        if splitmix(&mut self.state) >> 63 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

/// A chi_d draw: the norm of a d-dimensional standard Gaussian.
fn chi(rng: &mut Stream, d: usize) -> f64 {
    (0..d).map(|_| rng.normal().powi(2)).sum::<f64>().sqrt()
}

fn identity(d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    (0..d).for_each(|i| m[i * d + i] = 1.0);
    m
}

/// The d simplex directions of Reid et al. in closed form (d x d row-major): for i < d−1,
/// s_i = √(d/(d−1)) e_i − (√d+1)/(d−1)^{3/2} (1,…,1,0), and s_{d−1} = (1,…,1,0)/√(d−1).
/// Unit norm, pairwise cosine −1/(d−1), sum zero, last coordinate zero. Needs d ≥ 2.
pub fn simplex_directions(d: usize) -> Vec<f64> {
    let df = d as f64;
    let a = (df / (df - 1.0)).sqrt();
    let b = (df.sqrt() + 1.0) / (df - 1.0).powf(1.5);
    let last = 1.0 / (df - 1.0).sqrt();
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d - 1 {
            s[i * d + k] = if i == d - 1 {
                last
            } else {
                f64::from(u8::from(i == k)) * a - b
            };
        }
    }
    s
}

/// d + 1 unit directions in R^d forming a regular simplex ((d+1) x d row-major): for i < d,
/// s_i = √((d+1)/d) e_i + β (1,…,1) with β = (1/√d − √((d+1)/d))/d, and
/// s_d = −(1,…,1)/√d. Pairwise cosine −1/d, sum zero.
pub fn full_simplex_directions(d: usize) -> Vec<f64> {
    let df = d as f64;
    let a = ((df + 1.0) / df).sqrt();
    let beta = (1.0 / df.sqrt() - a) / df;
    let mut s = vec![0.0; (d + 1) * d];
    for i in 0..=d {
        for k in 0..d {
            s[i * d + k] = if i == d {
                -1.0 / df.sqrt()
            } else {
                f64::from(u8::from(i == k)) * a + beta
            };
        }
    }
    s
}

/// SimRF+ refinement: `sweeps` passes of s_i ← −r_i/|r_i|, r_i = Σ_{j≠i} n_j s_j, with a
/// running total so each update costs O(d). A direction whose r_i vanishes is kept.
pub fn refine_simplex(mut s: Vec<f64>, norms: &[f64], d: usize, sweeps: usize) -> Vec<f64> {
    let rows = norms.len();
    let mut total = vec![0.0; d];
    for i in 0..rows {
        for k in 0..d {
            total[k] += norms[i] * s[i * d + k];
        }
    }
    for _ in 0..sweeps {
        for i in 0..rows {
            let r: Vec<f64> = (0..d).map(|k| total[k] - norms[i] * s[i * d + k]).collect();
            let len = r.iter().map(|v| v * v).sum::<f64>().sqrt();
            if len == 0.0 {
                continue;
            }
            for k in 0..d {
                s[i * d + k] = -r[k] / len;
                total[k] = r[k] + norms[i] * s[i * d + k];
            }
        }
    }
    s
}

/// A d x d orthogonal matrix (row-major) from the Householder QR of a Gaussian matrix drawn
/// from `rng`: Q itself, with Mezzadri's sign fix when `fix` is [`SignFix::Applied`] (then Q
/// is Haar-distributed).
pub fn haar_orthogonal(rng: &mut Stream, d: usize, fix: SignFix) -> Vec<f64> {
    let mut a: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
    // Householder vectors v_k (stored below the diagonal of a, with their leading entry kept
    // apart) reduce a to R; Q = H_0 H_1 ⋯ H_{d−2} is then applied to the identity.
    let mut vs: Vec<Vec<f64>> = Vec::with_capacity(d);
    let mut diag_sign = vec![1.0; d];
    for k in 0..d {
        let norm = (k..d).map(|i| a[i * d + k].powi(2)).sum::<f64>().sqrt();
        let akk = a[k * d + k];
        // LAPACK's choice: r_kk = −sign(a_kk)|x|, which avoids cancellation.
        let alpha = if akk >= 0.0 { -norm } else { norm };
        diag_sign[k] = alpha.signum();
        let mut v: Vec<f64> = (k..d).map(|i| a[i * d + k]).collect();
        v[0] -= alpha;
        let vnorm2: f64 = v.iter().map(|x| x * x).sum();
        if vnorm2 > 0.0 {
            for j in k..d {
                let dot: f64 = (k..d).map(|i| v[i - k] * a[i * d + j]).sum::<f64>();
                let f = 2.0 * dot / vnorm2;
                (k..d).for_each(|i| a[i * d + j] -= f * v[i - k]);
            }
        }
        vs.push(v);
    }
    let mut q = identity(d);
    for k in (0..d).rev() {
        let v = &vs[k];
        let vnorm2: f64 = v.iter().map(|x| x * x).sum();
        if vnorm2 == 0.0 {
            continue;
        }
        for j in 0..d {
            let dot: f64 = (k..d).map(|i| v[i - k] * q[i * d + j]).sum();
            let f = 2.0 * dot / vnorm2;
            (k..d).for_each(|i| q[i * d + j] -= f * v[i - k]);
        }
    }
    if fix == SignFix::Applied {
        for i in 0..d {
            for j in 0..d {
                q[i * d + j] *= diag_sign[j];
            }
        }
    }
    q
}

/// (H D₃)(H D₂)(H D₁)/d^{3/2} (row-major), H the Sylvester Hadamard matrix and D_i random ±1
/// diagonals; d a power of two.
pub fn hadamard_rotation(rng: &mut Stream, d: usize) -> Vec<f64> {
    let signs: Vec<Vec<f64>> = (0..3)
        .map(|_| (0..d).map(|_| rng.sign()).collect())
        .collect();
    let scale = 1.0 / (d as f64).sqrt();
    // Column j of R is R e_j: apply D₁, H, D₂, H, D₃, H to e_j with the fast transform.
    let mut r = vec![0.0; d * d];
    let mut col = vec![0.0; d];
    for j in 0..d {
        col.iter_mut().for_each(|c| *c = 0.0);
        col[j] = 1.0;
        for s in &signs {
            col.iter_mut().zip(s).for_each(|(c, s)| *c *= s * scale);
            fwht(&mut col);
        }
        (0..d).for_each(|i| r[i * d + j] = col[i]);
    }
    r
}

/// In-place unnormalized fast Walsh-Hadamard transform (length a power of two).
fn fwht(x: &mut [f64]) {
    let mut h = 1;
    while h < x.len() {
        for block in x.chunks_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                let (u, v) = (*a, *b);
                *a = u + v;
                *b = u - v;
            }
        }
        h *= 2;
    }
}
