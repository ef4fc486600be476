//! vmcsinit: a fresh VMCS's controls as the CPU's capabilities allow, its guest state, and the
//! MSR bitmap and autoload areas (vmxaddmsr, vmxtrapmsr).

use super::{Vm, FLUSHEPT, FLUSHVPID};
use crate::hw::{EntryState, FxArea, Hw, Msr, VmcsField, PAGE};
use crate::vmcs::{self, *};
use ninep::Error;

/// Room in one frame for the MSR load/store areas (16 bytes an entry). The seed's
/// MAXMSR was 512 over two pages that need not be contiguous here.
const MAXMSR: usize = PAGE / 16;

/// The initial FXSAVE image of a freshly initialised FPU (fpinit): FCW 0x37f, MXCSR 0x1f80.
fn fpinit() -> FxArea {
    let mut fx = FxArea::default();
    fx.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
    fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    fx
}

impl Vm {
    /// vmcsinit: the controls, the initial guest state, the MSR areas and bitmap.
    pub(super) fn vmcsinit<H: Hw>(&mut self, hw: &mut H) -> Result<(), Error> {
        let w = |hw: &mut H, f: VmcsField, v: u64| vmcs::write(hw, f, v);
        self.entry = EntryState::default();
        self.launched = false;
        self.onentry = 0;

        // Each control as the CPU allows it (`caps`: the TRUE capability MSRs where it has
        // them); the reserved default-1 bits set as the seed sets them.
        let c = self.caps.ctls;
        // Not in the seed: the preemption timer, where the CPU has it.
        let x = c
            .pin
            .adjust(PINB_DEFAULT1 | PINB_EXITIRQ | PINB_EXITNMI | PINB_PREEMPT);
        w(hw, PINB_CTLS, x as u64)?;
        self.preempt = self.caps.preempt.filter(|_| x & PINB_PREEMPT != 0);

        let x = c.procb.adjust(
            PROCB_DEFAULT1
                | PROCB_TSCOFFSET
                | PROCB_EXITMWAIT
                | PROCB_EXITMONITOR
                | PROCB_EXITHLT
                | PROCB_EXITMOVDR
                | PROCB_EXITIO
                | PROCB_MSRBITMAP
                | PROCB_USECTLS2,
        );
        w(hw, PROCB_CTLS, x as u64)?;
        self.procbctls = x;
        self.mtf = self.caps.mtf();

        // VPIDs only where the CPU can flush one (else every entry and exit flushes).
        let vpid = if self.caps.vpid { PROCB_VPID } else { 0 };
        let x2 = c.procb2.adjust(PROCB_EPT | vpid | PROCB_UNRESTR);
        w(hw, PROCB_CTLS2, x2 as u64)?;

        let x = c.exit.adjust(
            VMEXIT_HOST64
                | VMEXIT_LD_IA32_PAT
                | VMEXIT_LD_IA32_EFER
                | VMEXIT_ST_DEBUG
                | VMEXIT_ST_IA32_EFER,
        );
        w(hw, VMEXIT_CTLS, x as u64)?;

        let x = c
            .entry
            .adjust(VMENTRY_LD_IA32_PAT | VMENTRY_LD_IA32_EFER | VMENTRY_LD_DEBUG);
        w(hw, VMENTRY_CTLS, x as u64)?;

        w(hw, CR3_TARGCNT, 0)?;
        w(hw, VMENTRY_INTRINFO, 0)?;
        w(hw, VMCS_LINK, u64::MAX)?;

        hw.write_host_state()
            .map_err(|_| Error::from("vmcswrite failed (host state)"))?;

        w(hw, EXC_BITMAP, 1 << VEC_MC | 1 << VEC_DB)?;
        w(hw, PFAULT_MASK, 0)?;
        w(hw, PFAULT_MATCH, 0)?;

        for f in [
            GUEST_CSBASE,
            GUEST_DSBASE,
            GUEST_ESBASE,
            GUEST_FSBASE,
            GUEST_GSBASE,
            GUEST_SSBASE,
        ] {
            w(hw, f, 0)?;
        }
        for f in [
            GUEST_CSLIMIT,
            GUEST_DSLIMIT,
            GUEST_ESLIMIT,
            GUEST_FSLIMIT,
            GUEST_GSLIMIT,
            GUEST_SSLIMIT,
        ] {
            w(hw, f, u64::MAX)?;
        }
        let code = (SEGG | SEGD | SEGP | SEGEXEC | SEGR) >> 8 | 1;
        let data = (SEGG | SEGB | SEGP | SEGDATA | SEGW) >> 8 | 1;
        w(hw, GUEST_CSPERM, code as u64)?;
        for f in [
            GUEST_DSPERM,
            GUEST_ESPERM,
            GUEST_FSPERM,
            GUEST_GSPERM,
            GUEST_SSPERM,
        ] {
            w(hw, f, data as u64)?;
        }
        w(hw, GUEST_LDTRPERM, SEGUNUSABLE as u64)?;

        let (cr0, cr4) = (hw.cr0(), hw.cr4());
        w(hw, GUEST_CR0MASK, CR0KERNEL)?;
        w(hw, GUEST_CR4MASK, CR4KERNEL)?;
        w(hw, GUEST_CR0, cr0 & CR0KERNEL | CR0_PE | CR0_ET | CR0_NE)?;
        w(hw, GUEST_CR3, 0)?;
        w(hw, GUEST_CR4, cr4 & CR4KERNEL)?;
        w(
            hw,
            GUEST_CR0SHADOW,
            cr0 & CR0KERNEL | CR0_PE | CR0_ET | CR0_NE,
        )?;
        w(hw, GUEST_CR4SHADOW, cr4 & !CR4VMXE & CR4KERNEL)?;

        w(hw, GUEST_IA32_PAT, 0x0007_0406_0007_0406)?;
        w(hw, GUEST_IA32_EFER, 0)?;

        w(hw, GUEST_TRBASE, 0)?;
        w(hw, GUEST_TRLIMIT, 0xffff)?;
        w(hw, GUEST_TRPERM, ((SEGTSS | SEGP) >> 8 | 2) as u64)?;

        w(hw, VM_EPTP, self.eptp())?;
        if x2 & PROCB_VPID != 0 {
            w(hw, VM_VPID, self.vpid as u64)?;
        }

        w(hw, GUEST_RFLAGS, RFLAGS_RSVD1)?;

        self.onentry = FLUSHEPT;
        if x2 & PROCB_VPID != 0 {
            self.onentry |= FLUSHVPID;
        }

        self.entry.fx = fpinit();
        self.entry.xcr0 = hw.host_xcr0() & 1;

        let f = self.frames()?;
        let (guest, host, bits) = (f.msrguest.pa(), f.msrhost.pa(), f.msrbits.pa());
        hw.frame(&f.msrbits).fill(0xff);
        self.trapmsr(hw, EFER, false);
        w(hw, VMENTRY_MSRLDADDR, guest)?;
        w(hw, VMEXIT_MSRSTADDR, guest)?;
        w(hw, VMEXIT_MSRLDADDR, host)?;
        w(hw, MSR_BITMAP, bits)?;

        if self.procbctls & PROCB_TSCOFFSET != 0 {
            // The guest's TSC starts at 0 (the seed started it at the host's TSC again).
            self.tscoffset = hw.rdtsc().wrapping_neg();
            w(hw, VMCS_TSC_OFFSET, self.tscoffset)?;
        }

        for msr in [STAR, LSTAR, CSTAR, SFMASK, KERNEL_GSBASE] {
            self.addmsr(hw, msr, 0)?;
        }
        for msr in [STAR, LSTAR, CSTAR, SFMASK, FSBASE, GSBASE, KERNEL_GSBASE] {
            self.trapmsr(hw, msr, false);
        }
        Ok(())
    }

    /// vmxaddmsr: an MSR switched through the autoload areas.
    fn addmsr<H: Hw>(&mut self, hw: &mut H, msr: Msr, gval: u64) -> Result<(), Error> {
        if self.nmsr >= MAXMSR {
            return Err("too many MSRs".into());
        }
        let i = self.nmsr * 16;
        self.nmsr += 1;
        let host = hw.rdmsr(msr).unwrap_or(0);
        let fr = self.frames()?;
        for (frame, v) in [(&fr.msrhost, host), (&fr.msrguest, gval)] {
            let f = hw.frame(frame);
            f[i..i + 8].copy_from_slice(&(msr.0 as u64).to_le_bytes());
            f[i + 8..i + 16].copy_from_slice(&v.to_le_bytes());
        }
        let n = self.nmsr as u64;
        vmcs::write(hw, VMENTRY_MSRLDCNT, n)?;
        vmcs::write(hw, VMEXIT_MSRSTCNT, n)?;
        vmcs::write(hw, VMEXIT_MSRLDCNT, n)
    }

    /// vmxtrapmsr with TRAPRD|TRAPWR both set (`trap`) or both clear.
    fn trapmsr<H: Hw>(&mut self, hw: &mut H, Msr(msr): Msr, trap: bool) {
        if msr >= 0x2000 && msr.wrapping_sub(0xc000_0000) >= 0x2000 {
            return;
        }
        let m = msr & 0x1fff | msr >> 18 & 0x2000;
        let bit = 1u32 << (m & 31);
        let Some(fr) = &self.frames else {
            return;
        };
        let f = hw.frame(&fr.msrbits);
        for word in [m / 32, m / 32 + 512] {
            let at = word as usize * 4;
            let mut v = u32::from_le_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
            if trap {
                v |= bit;
            } else {
                v &= !bit;
            }
            f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
}
