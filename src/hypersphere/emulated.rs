//! The hypersphere entry points on the CPU emulator (feature `emulator`): the same plans as the
//! GPU methods, run on guarded host buffers. For tests; see [`crate::emulator`].

use super::gpu::{
    LerpBackwardArgs, plan_lerp_backward, plan_lerp_forward, plan_normalize_backward,
    plan_normalize_forward, plan_project,
};
use super::{Axis, LerpNormalize, Normalize, Projection};
use crate::element::Element;
use crate::emulator::{Emulator, Guarded, HostRows, HostRowsMut, Output, Staged};
use crate::error::Result;
use crate::launch::Launcher;

impl Normalize {
    /// [`Normalize::forward`] on the CPU emulator.
    pub fn forward_emulated<T: Element>(
        &self,
        emu: &Emulator,
        x: &HostRows<'_, T>,
        scale: Option<&[T]>,
        y: &mut HostRowsMut<'_, T>,
    ) -> Result<()> {
        let mut staged = Staged::new();
        let xa = staged.rows("x", x);
        let sa = scale.map(|s| staged.vector("scale", s));
        let (yo, ya) = Output::rows("y", y);
        let launch = plan_normalize_forward::<T>(self, emu, &xa, sa.as_ref(), &ya)?;
        emu.launch(&launch)?;
        staged.check()?;
        yo.finish_rows(y)
    }

    /// [`Normalize::backward`] on the CPU emulator.
    pub fn backward_emulated<T: Element>(
        &self,
        emu: &Emulator,
        x: &HostRows<'_, T>,
        scale: Option<&[T]>,
        dy: &HostRows<'_, T>,
        dx: &mut HostRowsMut<'_, T>,
        dscale: Option<&mut [T]>,
    ) -> Result<()> {
        let mut staged = Staged::new();
        let xa = staged.rows("x", x);
        let sa = scale.map(|s| staged.vector("scale", s));
        let dya = staged.rows("dy", dy);
        let (dxo, dxa) = Output::rows("dx", dx);
        let ds = dscale.as_deref().map(|d| Output::vector("dscale", d));
        let plan = plan_normalize_backward::<T>(
            self,
            emu,
            &xa,
            sa.as_ref(),
            &dya,
            &dxa,
            ds.as_ref().map(|(_, a)| a),
        )?;
        let ws = Guarded::<f64>::poisoned("workspace", plan.workspace);
        plan.run(emu, ws.addr())?;
        ws.check_guards()?;
        staged.check()?;
        dxo.finish_rows(dx)?;
        if let (Some((o, _)), Some(d)) = (ds, dscale) {
            o.finish_vector(d)?;
        }
        Ok(())
    }
}

impl LerpNormalize {
    /// [`LerpNormalize::forward`] on the CPU emulator.
    pub fn forward_emulated<T: Element>(
        &self,
        emu: &Emulator,
        h: &HostRows<'_, T>,
        u: &HostRows<'_, T>,
        p: &[T],
        y: &mut HostRowsMut<'_, T>,
    ) -> Result<()> {
        let mut staged = Staged::new();
        let ha = staged.rows("h", h);
        let ua = staged.rows("u", u);
        let pa = staged.vector("p", p);
        let (yo, ya) = Output::rows("y", y);
        let launch = plan_lerp_forward::<T>(self, emu, &ha, &ua, &pa, &ya)?;
        emu.launch(&launch)?;
        staged.check()?;
        yo.finish_rows(y)
    }

    /// [`LerpNormalize::backward`] on the CPU emulator.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_emulated<T: Element>(
        &self,
        emu: &Emulator,
        h: &HostRows<'_, T>,
        u: &HostRows<'_, T>,
        p: &[T],
        dy: &HostRows<'_, T>,
        dh: &mut HostRowsMut<'_, T>,
        du: &mut HostRowsMut<'_, T>,
        dp: Option<&mut [T]>,
    ) -> Result<()> {
        let mut staged = Staged::new();
        let ha = staged.rows("h", h);
        let ua = staged.rows("u", u);
        let pa = staged.vector("p", p);
        let dya = staged.rows("dy", dy);
        let (dho, dha) = Output::rows("dh", dh);
        let (duo, dua) = Output::rows("du", du);
        let dpo = dp.as_deref().map(|d| Output::vector("dp", d));
        let args = LerpBackwardArgs {
            h: &ha,
            u: &ua,
            p: &pa,
            dy: &dya,
            dh: &dha,
            du: &dua,
            dp: dpo.as_ref().map(|(_, a)| a),
        };
        let plan = plan_lerp_backward::<T>(self, emu, &args)?;
        let ws = Guarded::<f64>::poisoned("workspace", plan.workspace);
        plan.run(emu, ws.addr())?;
        ws.check_guards()?;
        staged.check()?;
        dho.finish_rows(dh)?;
        duo.finish_rows(du)?;
        if let (Some((o, _)), Some(d)) = (dpo, dp) {
            o.finish_vector(d)?;
        }
        Ok(())
    }
}

impl Projection {
    /// [`Projection::project_many`] on the CPU emulator.
    pub fn project_many_emulated<T: Element>(
        &self,
        emu: &Emulator,
        mats: &mut [(&mut HostRowsMut<'_, T>, Axis)],
    ) -> Result<()> {
        let mut outs = Vec::with_capacity(mats.len());
        let mut args = Vec::with_capacity(mats.len());
        for (w, axis) in mats.iter() {
            let (o, a) = Output::rows("w", w);
            outs.push(o);
            args.push((a, *axis));
        }
        for launch in plan_project::<T>(self, &args)? {
            emu.launch(&launch)?;
        }
        for (o, (w, _)) in outs.into_iter().zip(mats.iter_mut()) {
            o.finish_rows(w)?;
        }
        Ok(())
    }
}
