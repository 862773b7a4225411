//! The Gram kernels on the CPU emulator (feature `emulator`), for tests.

use super::gpu::{
    Kind, Tables, call_shape, check_conv_grad, check_grad, check_out, conv_grad_schedule, plan,
    plan_conv_grad,
};
use super::{ConvBatch, DenseBatch, DeviceBound, Iterations, Precision, Storage};
use crate::emulator::{Emulator, Guarded};
use crate::error::Result;
use crate::launch::{Launcher, VecArg};

impl DenseBatch {
    /// [`super::gpu::dense_bounds`] on the CPU emulator, with host slices: `out` gets one
    /// [`DeviceBound`] per matrix.
    pub fn bounds_emulated<T: Storage>(
        &self,
        emu: &Emulator,
        w: &[T],
        out: &mut [DeviceBound],
        precision: Precision,
        iterations: Iterations,
    ) -> Result<()> {
        let wg = Guarded::new("w", w);
        let mg = Guarded::new("matrices", &self.matrices);
        let rg = Guarded::new("order", &self.schedule.order);
        let og = Guarded::<DeviceBound>::poisoned("out", out.len());
        check_out(
            &VecArg {
                addr: 0,
                len: out.len(),
            },
            self.len(),
            "matrices",
        )?;
        iterations.check()?;
        let lg = Guarded::new("large", &self.large.entries);
        // Poisoned: the kernels must write every workspace entry before reading it.
        let work = call_shape::<T>(Kind::Dense, &self.large, precision).work_bytes;
        let xg = Guarded::<u8>::poisoned("workspace", work);
        let tables = Tables {
            items: mg.addr(),
            order: rg.addr(),
            item_out: og.addr(),
            layer_start: 0,
            layer_out: 0,
            grad: 0,
            large: lg.addr(),
            work: VecArg {
                addr: xg.addr(),
                len: work,
            },
            ..Tables::none()
        };
        let w_arg = VecArg {
            addr: wg.addr(),
            len: w.len(),
        };
        for launch in plan::<T>(
            emu,
            Kind::Dense,
            &self.schedule,
            &self.large,
            self.span(),
            0,
            tables,
            &w_arg,
            precision,
            iterations,
        )? {
            emu.launch(&launch)?;
        }
        wg.check_unchanged(w)?;
        mg.check_unchanged(&self.matrices)?;
        rg.check_unchanged(&self.schedule.order)?;
        lg.check_unchanged(&self.large.entries)?;
        xg.check_guards()?;
        og.copy_out(out)
    }
}

impl DenseBatch {
    /// [`super::gpu::dense_bounds_and_gradients`] on the CPU emulator: `out` gets one
    /// [`DeviceBound`] per matrix, `grad` (w's length) the gradients at the matrices' offsets.
    pub fn bounds_and_gradients_emulated<T: Storage>(
        &self,
        emu: &Emulator,
        w: &[T],
        out: &mut [DeviceBound],
        grad: &mut [T],
        precision: Precision,
        iterations: Iterations,
    ) -> Result<()> {
        let wg = Guarded::new("w", w);
        let mg = Guarded::new("matrices", &self.matrices);
        let rg = Guarded::new("order", &self.schedule.order);
        let og = Guarded::<DeviceBound>::poisoned("out", out.len());
        let gg = Guarded::new("grad", grad);
        check_out(
            &VecArg {
                addr: 0,
                len: out.len(),
            },
            self.len(),
            "matrices",
        )?;
        let w_arg = VecArg {
            addr: wg.addr(),
            len: w.len(),
        };
        let g_arg = VecArg {
            addr: gg.addr(),
            len: grad.len(),
        };
        check_grad(self, &g_arg, &w_arg)?;
        iterations.check()?;
        let lg = Guarded::new("large", &self.large.entries);
        let work = call_shape::<T>(Kind::DenseGrad, &self.large, precision).work_bytes;
        let xg = Guarded::<u8>::poisoned("workspace", work);
        let tables = Tables {
            items: mg.addr(),
            order: rg.addr(),
            item_out: og.addr(),
            layer_start: 0,
            layer_out: 0,
            grad: gg.addr(),
            large: lg.addr(),
            work: VecArg {
                addr: xg.addr(),
                len: work,
            },
            ..Tables::none()
        };
        for launch in plan::<T>(
            emu,
            Kind::DenseGrad,
            &self.schedule,
            &self.large,
            self.span(),
            0,
            tables,
            &w_arg,
            precision,
            iterations,
        )? {
            emu.launch(&launch)?;
        }
        wg.check_unchanged(w)?;
        mg.check_unchanged(&self.matrices)?;
        rg.check_unchanged(&self.schedule.order)?;
        lg.check_unchanged(&self.large.entries)?;
        xg.check_guards()?;
        gg.copy_out(grad)?;
        og.copy_out(out)
    }
}

impl ConvBatch {
    /// [`super::gpu::conv_bounds`] on the CPU emulator, with host slices: `out` gets one
    /// [`DeviceBound`] per layer.
    pub fn bounds_emulated<T: Storage>(
        &self,
        emu: &Emulator,
        w: &[T],
        out: &mut [DeviceBound],
        precision: Precision,
        iterations: Iterations,
    ) -> Result<()> {
        self.emulate(emu, w, out, None, precision, iterations)
    }

    /// [`super::gpu::conv_bounds_and_gradients`] on the CPU emulator: `out` gets one
    /// [`DeviceBound`] per layer, `grad` (w's length) the gradients at the kernels' offsets.
    pub fn bounds_and_gradients_emulated<T: Storage>(
        &self,
        emu: &Emulator,
        w: &[T],
        out: &mut [DeviceBound],
        grad: &mut [T],
        precision: Precision,
        iterations: Iterations,
    ) -> Result<()> {
        self.emulate(emu, w, out, Some(grad), precision, iterations)
    }

    fn emulate<T: Storage>(
        &self,
        emu: &Emulator,
        w: &[T],
        out: &mut [DeviceBound],
        grad: Option<&mut [T]>,
        precision: Precision,
        iterations: Iterations,
    ) -> Result<()> {
        let wg = Guarded::new("w", w);
        let ig = Guarded::new("items", &self.items);
        let rg = Guarded::new("order", &self.schedule.order);
        let sg = Guarded::new("layer_start", &self.layer_start);
        let xg = Guarded::<DeviceBound>::poisoned("scratch", self.items.len());
        let og = Guarded::<DeviceBound>::poisoned("out", out.len());
        check_out(
            &VecArg {
                addr: 0,
                len: out.len(),
            },
            self.len(),
            "layers",
        )?;
        iterations.check()?;
        let w_arg = VecArg {
            addr: wg.addr(),
            len: w.len(),
        };
        let gg = grad.as_ref().map(|g| Guarded::new("grad", g));
        let g_arg = VecArg {
            addr: gg.as_ref().map_or(0, |g| g.addr()),
            len: grad.as_ref().map_or(0, |g| g.len()),
        };
        let kind = if gg.is_some() {
            check_conv_grad(self, &g_arg, &w_arg)?;
            Kind::ConvGrad
        } else {
            Kind::Conv
        };
        let lg = Guarded::new("large", &self.large.entries);
        let work = call_shape::<T>(kind, &self.large, precision).work_bytes;
        let wkg = Guarded::<u8>::poisoned("workspace", work);
        let grad_order = &conv_grad_schedule::<T>(self, precision).order;
        let gog = Guarded::new("grad_order", grad_order);
        let ag = Guarded::<u32>::poisoned("layer_argmax", self.len());
        let lsg = Guarded::<DeviceBound>::poisoned("layer scratch", self.len());
        let tables = Tables {
            items: ig.addr(),
            order: rg.addr(),
            item_out: xg.addr(),
            layer_start: sg.addr(),
            layer_out: og.addr(),
            grad: g_arg.addr,
            large: lg.addr(),
            work: VecArg {
                addr: wkg.addr(),
                len: work,
            },
            layer_argmax: if gg.is_some() { ag.addr() } else { 0 },
            grad_order: gog.addr(),
            grad_out: lsg.addr(),
        };
        let mut launches = plan::<T>(
            emu,
            kind,
            &self.schedule,
            &self.large,
            self.span(),
            self.len(),
            tables,
            &w_arg,
            precision,
            iterations,
        )?;
        if gg.is_some() {
            launches.extend(plan_conv_grad::<T>(
                emu, self, tables, &w_arg, precision, iterations,
            )?);
        }
        for launch in &launches {
            emu.launch(launch)?;
        }
        wg.check_unchanged(w)?;
        ig.check_unchanged(&self.items)?;
        rg.check_unchanged(&self.schedule.order)?;
        sg.check_unchanged(&self.layer_start)?;
        lg.check_unchanged(&self.large.entries)?;
        gog.check_unchanged(grad_order)?;
        wkg.check_guards()?;
        xg.check_guards()?;
        ag.check_guards()?;
        lsg.check_guards()?;
        if let (Some(gg), Some(grad)) = (gg, grad) {
            gg.copy_out(grad)?;
        }
        og.copy_out(out)
    }
}
