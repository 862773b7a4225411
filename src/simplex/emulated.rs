//! The simplex-random-feature kernels on the CPU emulator (feature `emulator`), for tests.

use super::gpu::{
    FavorGradArgs, ProjectionArg, favor_workspace_len, plan_estimate, plan_favor,
    plan_favor_backward, plan_features, plan_features_backward,
};
use super::{AttentionShape, Favor, FeatureMap, KernelKind};
use crate::element::Element;
use crate::emulator::{Emulator, Guarded, HostRows, HostRowsMut, Output, Staged};
use crate::error::{Error, Result};
use crate::launch::Launcher;

impl FeatureMap {
    /// [`FeatureMap::features`] on the CPU emulator: `w` is W (m x d, f32, row-major).
    pub fn features_emulated<T: Element>(
        &self,
        emu: &Emulator,
        w: &[f32],
        features: usize,
        x: &HostRows<'_, T>,
        out: &mut HostRowsMut<'_, T>,
        shift: &mut [f32],
    ) -> Result<()> {
        let mut staged_x = Staged::new();
        let xa = staged_x.rows("x", x);
        let mut staged_w = Staged::new();
        let wa = stage_projection(&mut staged_w, w, features, xa.cols)?;
        let (oo, oa) = Output::rows("out", out);
        let (so, sa) = Output::vector("shift", shift);
        for launch in plan_features::<T>(self, emu, false, &wa, &xa, &oa, &sa)? {
            emu.launch(&launch)?;
        }
        staged_x.check()?;
        staged_w.check()?;
        oo.finish_rows(out)?;
        so.finish_vector(shift)
    }

    /// [`FeatureMap::features_backward`] on the CPU emulator.
    #[allow(clippy::too_many_arguments)]
    pub fn features_backward_emulated<T: Element>(
        &self,
        emu: &Emulator,
        w: &[f32],
        features: usize,
        x: &HostRows<'_, T>,
        shift: &[f32],
        dphi: &HostRows<'_, T>,
        dx: &mut HostRowsMut<'_, T>,
    ) -> Result<()> {
        let mut staged = Staged::new();
        let (xa, ga) = (staged.rows("x", x), staged.rows("dphi", dphi));
        let mut staged_f = Staged::new();
        let wa = stage_projection(&mut staged_f, w, features, xa.cols)?;
        let sa = staged_f.vector("shift", shift);
        let (dxo, dxa) = Output::rows("dx", dx);
        emu.launch(&plan_features_backward::<T>(
            self, emu, false, &wa, &xa, &sa, &ga, &dxa,
        )?)?;
        staged.check()?;
        staged_f.check()?;
        dxo.finish_rows(dx)
    }
}

/// [`super::gpu::log_estimate_pairs`] on the CPU emulator: `w` is W (m x d, f32, row-major).
pub fn log_estimate_pairs_emulated<T: Element>(
    emu: &Emulator,
    kernel: KernelKind,
    w: &[f32],
    features: usize,
    x: &HostRows<'_, T>,
    y: &HostRows<'_, T>,
    out: &mut [f32],
) -> Result<()> {
    let mut staged = Staged::new();
    let (xa, ya) = (staged.rows("x", x), staged.rows("y", y));
    let mut staged_w = Staged::new();
    let wa = stage_projection(&mut staged_w, w, features, xa.cols)?;
    let (oo, oa) = Output::vector("out", out);
    emu.launch(&plan_estimate::<T>(kernel, emu, &wa, &xa, &ya, &oa)?)?;
    staged.check()?;
    staged_w.check()?;
    oo.finish_vector(out)
}

impl Favor {
    /// [`Favor::forward`] on the CPU emulator: `w` is W (m x dim, f32, row-major). The
    /// workspace starts as NaN, so a read before a write shows in the output.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_emulated<T: Element>(
        &self,
        emu: &Emulator,
        shape: &AttentionShape,
        w: &[f32],
        features: usize,
        q: &HostRows<'_, T>,
        k: &HostRows<'_, T>,
        v: &HostRows<'_, T>,
        out: &mut HostRowsMut<'_, T>,
    ) -> Result<()> {
        let mut staged = Staged::new();
        let (qa, ka, va) = (
            staged.rows("q", q),
            staged.rows("k", k),
            staged.rows("v", v),
        );
        let mut staged_w = Staged::new();
        let wa = stage_projection(&mut staged_w, w, features, shape.dim)?;
        let (oo, oa) = Output::rows("out", out);
        plan_favor::<T>(self, emu, shape, &wa, &qa, &ka, &va, &oa, 0)?;
        let ws =
            Guarded::<f64>::poisoned("workspace", favor_workspace_len(shape, features, false)?);
        plan_favor::<T>(self, emu, shape, &wa, &qa, &ka, &va, &oa, ws.addr())?.run(emu)?;
        ws.check_guards()?;
        staged.check()?;
        staged_w.check()?;
        oo.finish_rows(out)
    }

    /// [`Favor::backward`] on the CPU emulator: `w` is W (m x dim, f32, row-major). The
    /// workspace starts as NaN, so a read before a write shows in the gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_emulated<T: Element>(
        &self,
        emu: &Emulator,
        shape: &AttentionShape,
        w: &[f32],
        features: usize,
        q: &HostRows<'_, T>,
        k: &HostRows<'_, T>,
        v: &HostRows<'_, T>,
        dout: &HostRows<'_, T>,
        dq: &mut HostRowsMut<'_, T>,
        dk: &mut HostRowsMut<'_, T>,
        dv: &mut HostRowsMut<'_, T>,
    ) -> Result<()> {
        self.gradients_emulated(emu, shape, w, features, q, k, v, dout, None, dq, dk, dv)
    }

    /// [`Favor::forward_saved`] then [`Favor::backward_saved`] on the CPU emulator: the outputs
    /// and the gradients, from one workspace that starts as NaN, the gradient stages reading
    /// the forward's features, shifts and states where the forward left them.
    #[allow(clippy::too_many_arguments)]
    pub fn training_step_emulated<T: Element>(
        &self,
        emu: &Emulator,
        shape: &AttentionShape,
        w: &[f32],
        features: usize,
        q: &HostRows<'_, T>,
        k: &HostRows<'_, T>,
        v: &HostRows<'_, T>,
        dout: &HostRows<'_, T>,
        out: &mut HostRowsMut<'_, T>,
        dq: &mut HostRowsMut<'_, T>,
        dk: &mut HostRowsMut<'_, T>,
        dv: &mut HostRowsMut<'_, T>,
    ) -> Result<()> {
        self.gradients_emulated(
            emu,
            shape,
            w,
            features,
            q,
            k,
            v,
            dout,
            Some(out),
            dq,
            dk,
            dv,
        )
    }

    /// The gradients dq, dk, dv in one workspace that starts as NaN: with `out`, after a
    /// forward pass that writes it and leaves its stages for the gradient stages; without,
    /// every stage of the backward pass.
    #[allow(clippy::too_many_arguments)]
    fn gradients_emulated<T: Element>(
        &self,
        emu: &Emulator,
        shape: &AttentionShape,
        w: &[f32],
        features: usize,
        q: &HostRows<'_, T>,
        k: &HostRows<'_, T>,
        v: &HostRows<'_, T>,
        dout: &HostRows<'_, T>,
        out: Option<&mut HostRowsMut<'_, T>>,
        dq: &mut HostRowsMut<'_, T>,
        dk: &mut HostRowsMut<'_, T>,
        dv: &mut HostRowsMut<'_, T>,
    ) -> Result<()> {
        let mut staged = Staged::new();
        let (qa, ka, va, da) = (
            staged.rows("q", q),
            staged.rows("k", k),
            staged.rows("v", v),
            staged.rows("dout", dout),
        );
        let mut staged_w = Staged::new();
        let wa = stage_projection(&mut staged_w, w, features, shape.dim)?;
        let (dqo, dqa) = Output::rows("dq", dq);
        let (dko, dka) = Output::rows("dk", dk);
        let (dvo, dva) = Output::rows("dv", dv);
        let args = FavorGradArgs {
            dout: da,
            dq: dqa,
            dk: dka,
            dv: dva,
        };
        let forward = out.as_deref().map(|o| Output::rows("out", o));
        if let Some((_, oa)) = &forward {
            plan_favor::<T>(self, emu, shape, &wa, &qa, &ka, &va, oa, 0)?;
        }
        plan_favor_backward::<T>(self, emu, shape, &wa, &qa, &ka, &va, &args, 0)?;
        let ws = Guarded::<f64>::poisoned("workspace", favor_workspace_len(shape, features, true)?);
        let plan =
            plan_favor_backward::<T>(self, emu, shape, &wa, &qa, &ka, &va, &args, ws.addr())?;
        match &forward {
            Some((_, oa)) => {
                plan_favor::<T>(self, emu, shape, &wa, &qa, &ka, &va, oa, ws.addr())?.run(emu)?;
                plan.run_after_forward(emu)?;
            }
            None => plan.run(emu)?,
        }
        ws.check_guards()?;
        staged.check()?;
        staged_w.check()?;
        dqo.finish_rows(dq)?;
        dko.finish_rows(dk)?;
        dvo.finish_rows(dv)?;
        match (forward, out) {
            (Some((oo, _)), Some(out)) => oo.finish_rows(out),
            _ => Ok(()),
        }
    }
}

/// Stages W (m x dim, f32, row-major) and checks its length.
fn stage_projection<'a>(
    staged: &mut Staged<'a, f32>,
    w: &'a [f32],
    features: usize,
    dim: usize,
) -> Result<ProjectionArg> {
    if features == 0 || w.len() != features * dim {
        return Err(Error::shape(format!(
            "W has {} elements, not {features} x {dim}",
            w.len()
        )));
    }
    let wa = staged.vector("w", w);
    Ok(ProjectionArg {
        addr: wa.addr,
        features,
        dim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simplex::projection::{Coupling, ProjectionSpec};
    use crate::simplex::{KernelKind, Stabilizer, cpu};
    use half::bf16;

    /// 16-bit inputs with f32 features (FAVOR+'s workspace) take the tensor-core kernel with W
    /// in three bf16 parts: the features must keep f32 accuracy, well below the 2^-16 relative
    /// error of W in two parts (about 1e-4 relative in the features at these sizes).
    #[test]
    fn tensor_core_features_to_f32_keep_f32_accuracy() {
        let (rows, d, m) = (130, 64, 256);
        let map = FeatureMap {
            kernel: KernelKind::Softmax,
            stabilizer: Stabilizer::Row,
            eps: 0.0,
            input_scale: (d as f64).powf(-0.25),
        };
        let w = ProjectionSpec::new(Coupling::Simplex, m, d, 7)
            .unwrap()
            .draw(0);
        let w32 = w.to_f32();
        let x: Vec<bf16> = (0..rows * d)
            .map(|i| bf16::from_f64(((i * 7919) % 1000) as f64 / 250.0 - 2.0))
            .collect();
        let emu = Emulator::new(2);
        let mut staged = Staged::new();
        let xa = staged.rows("x", &HostRows::new(&x, rows, d, d).unwrap());
        let mut staged_w = Staged::new();
        let wa = stage_projection(&mut staged_w, &w32, m, d).unwrap();
        let mut out = vec![f32::NAN; rows * m];
        let mut shift = vec![f32::NAN; rows];
        let out_rows = HostRowsMut::new(&mut out, rows, m, m).unwrap();
        let (oo, oa) = Output::rows("out", &out_rows);
        let (so, sa) = Output::vector("shift", &shift);
        let plan = plan_features::<bf16>(&map, &emu, true, &wa, &xa, &oa, &sa).unwrap();
        assert!(
            plan[0].kernel.starts_with("sk_rf_features_tc_"),
            "{}",
            plan[0].kernel
        );
        for launch in &plan {
            emu.launch(launch).unwrap();
        }
        let mut out_rows = HostRowsMut::new(&mut out, rows, m, m).unwrap();
        oo.finish_rows(&mut out_rows).unwrap();
        so.finish_vector(&mut shift).unwrap();
        let xf: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
        let w64 = crate::simplex::Projection {
            w: w32.iter().map(|&v| f64::from(v)).collect(),
            ..w
        };
        let want = cpu::features(&map, &w64, &xf, rows).unwrap();
        let worst = out
            .iter()
            .zip(&want.phi)
            .map(|(g, w)| (f64::from(*g) - w).abs() / w)
            .fold(0.0, f64::max);
        assert!(worst < 2e-5, "worst relative error {worst:.2e}");
        eprintln!("worst relative error {worst:.2e}");
    }
}
