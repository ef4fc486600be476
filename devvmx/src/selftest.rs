//! `selftest=vmx`: proves VMXON, the VMCS host state and the entry trampoline before the
//! #X device uses them. A real-mode unrestricted guest under EPT runs one page holding
//! `out 0x80, al; hlt`: the first entry must exit with reason 30 (I/O) carrying the
//! guest's al, the VMRESUME after it with reason 12 (HLT). When the kernel runs with
//! interrupts on, the guest then spins (`jmp $`) with RFLAGS.IF set and the timer must force
//! external-interrupt exits whose interrupt the host then takes (the tick count advances).
//! Last, the guest spins with IF clear and the VMX preemption timer must end the run (exit
//! 52): Bochs 2.7 does not exit on external interrupts while the guest's IF is clear (a
//! Bochs bug; the SDM says IF does not block them under external-interrupt exiting), so the
//! preemption timer is what bounds a `cli; jmp $` guest there.
//!
//! Generic over [`Hw`]: the kernel runs it on its `KernelHw` at boot, host tests on
//! `TestHw` with scripted exits. [`Env`] is what it needs from the kernel besides `Hw`.

use crate::caps::Caps;
use crate::hw::{alloc_array, EntryState, Frame, Hw, Msr, Phys, VmcsField, VmxFail};
use crate::vmcs::*;
use core::fmt;

const GUEST_CODE: [u8; 5] = [0xe6, 0x80, 0xf4, 0xeb, 0xfe]; // out 0x80, al; hlt; jmp $
const GUEST_AL: u64 = 0x5a;

/// A log line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// The kernel around the self-test.
pub trait Env {
    /// Are interrupts on? (Only then are external-interrupt exits tried.)
    fn interrupts_enabled(&self) -> bool;
    /// The timer's tick count.
    fn ticks(&self) -> u64;
    /// One line of the self-test's log.
    fn log(&mut self, level: Level, line: fmt::Arguments);
}

macro_rules! info {
    ($env:expr, $($arg:tt)*) => { $env.log(Level::Info, format_args!($($arg)*)) };
}

macro_rules! error {
    ($env:expr, $($arg:tt)*) => { $env.log(Level::Error, format_args!($($arg)*)) };
}

/// Adjusts `want` to a VMX capability MSR: allowed-0 bits forced on, allowed-1 bits only.
fn adjust<H: Hw>(hw: &mut H, msr: Msr, want: u32) -> Result<u64, &'static str> {
    let cap = hw.rdmsr(msr).ok_or("capability msr missing")?;
    Ok(((want | cap as u32) & (cap >> 32) as u32) as u64)
}

/// Runs the self-test, logging each step; true when the guest exited as expected.
pub fn run<H: Hw, E: Env>(hw: &mut H, env: &mut E) -> bool {
    match run_on(hw, env) {
        Ok(()) => {
            info!(env, "vmx selftest: ok");
            true
        }
        Err(e) => {
            let err = hw.vmread(VM_INSTRERR).unwrap_or(u64::MAX);
            error!(
                env,
                "vmx selftest: FAIL: {} (vm-instruction error {})", e, err
            );
            false
        }
    }
}

fn vm(r: Result<(), VmxFail>, what: &'static str) -> Result<(), &'static str> {
    r.map_err(|_| what)
}

fn read<H: Hw>(hw: &mut H, f: VmcsField) -> Result<u64, &'static str> {
    hw.vmread(f).map_err(|_| "vmread")
}

fn run_on<H: Hw, E: Env>(hw: &mut H, env: &mut E) -> Result<(), &'static str> {
    if hw.cpuid(1, 0)[2] & CPUID1_ECX_VMX == 0 {
        return Err("no VMX in CPUID");
    }
    let fc = hw
        .rdmsr(IA32_FEATURE_CONTROL)
        .ok_or("no IA32_FEATURE_CONTROL")?;
    let on = FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMXON;
    if fc & FEATURE_CONTROL_LOCK == 0 && !hw.wrmsr(IA32_FEATURE_CONTROL, fc | on) {
        return Err("cannot enable VMXON in IA32_FEATURE_CONTROL");
    }
    let basic = hw.rdmsr(VMX_BASIC_MSR).ok_or("no VMX_BASIC")?;
    let fixed = |hw: &mut H, m0: Msr, m1: Msr| -> Result<(u64, u64), &'static str> {
        Ok((
            hw.rdmsr(m0).ok_or("no fixed msr")?,
            hw.rdmsr(m1).ok_or("no fixed msr")?,
        ))
    };
    let (c0f0, c0f1) = fixed(hw, VMX_CR0_FIXED0, VMX_CR0_FIXED1)?;
    let (c4f0, c4f1) = fixed(hw, VMX_CR4_FIXED0, VMX_CR4_FIXED1)?;
    let cr0 = (hw.cr0() | c0f0) & c0f1;
    let cr4 = (hw.cr4() | c4f0) & c4f1;
    hw.set_cr0(cr0);
    hw.set_cr4(cr4);
    info!(
        env,
        "vmx selftest: basic {:#x} cr0 {:#x} cr4 {:#x}", basic, cr0, cr4
    );
    let caps = [
        ("pin", VMX_PINB_CTLS_MSR),
        ("proc", VMX_PROCB_CTLS_MSR),
        ("proc2", VMX_PROCB_CTLS2_MSR),
        ("exit", VMX_VMEXIT_CTLS_MSR),
        ("entry", VMX_VMENTRY_CTLS_MSR),
        ("misc", VMX_MISC_MSR),
    ];
    for (name, msr) in caps {
        let v = hw.rdmsr(msr).unwrap_or(0);
        info!(env, "vmx selftest: {} controls {:#x}", name, v);
    }

    let rev = (basic & 0x7fff_ffff) as u32;
    let frames: [Frame; 7] = alloc_array(hw).ok_or("no memory")?;
    let [vmxon, vmcs, pml4, pdpt, pd, pt, page] = &frames;
    hw.frame(vmxon)[..4].copy_from_slice(&rev.to_le_bytes());
    hw.frame(vmcs)[..4].copy_from_slice(&rev.to_le_bytes());
    // EPT: guest-physical page 0 -> `page`, RWX, write-back leaf.
    let link = |hw: &mut H, table: &Frame, next: u64| {
        hw.frame(table)[..8].copy_from_slice(&next.to_le_bytes());
    };
    link(hw, pml4, pdpt.pa() | 7);
    link(hw, pdpt, pd.pa() | 7);
    link(hw, pd, pt.pa() | 7);
    link(hw, pt, page.pa() | 7 | 6 << 3);
    hw.frame(page)[..GUEST_CODE.len()].copy_from_slice(&GUEST_CODE);

    let result = vm(hw.vmxon(vmxon), "vmxon").and_then(|()| {
        let r = guest(hw, env, vmcs, pml4.pa());
        hw.vmxoff();
        r
    });
    for f in frames {
        hw.free_frame(f);
    }
    result
}

fn guest<H: Hw, E: Env>(
    hw: &mut H,
    env: &mut E,
    vmcs: &Frame,
    pml4: Phys,
) -> Result<(), &'static str> {
    vm(hw.vmclear(vmcs), "vmclear")?;
    vm(hw.vmptrld(vmcs), "vmptrld")?;
    let pin = adjust(hw, VMX_PINB_CTLS_MSR, PINB_EXITIRQ)?;
    let proc = adjust(
        hw,
        VMX_PROCB_CTLS_MSR,
        PROCB_EXITHLT | PROCB_EXITIO | PROCB_USECTLS2,
    )?;
    let proc2 = adjust(hw, VMX_PROCB_CTLS2_MSR, PROCB_EPT | PROCB_UNRESTR)?;
    let exit = adjust(
        hw,
        VMX_VMEXIT_CTLS_MSR,
        VMEXIT_HOST64 | VMEXIT_LD_IA32_PAT | VMEXIT_LD_IA32_EFER,
    )?;
    let entry = adjust(
        hw,
        VMX_VMENTRY_CTLS_MSR,
        VMENTRY_LD_IA32_PAT | VMENTRY_LD_IA32_EFER,
    )?;
    let c0f0 = hw.rdmsr(VMX_CR0_FIXED0).unwrap_or(0);
    let guest_cr0 = (c0f0 & !(CR0_PE | CR0_PG)) | CR0_NE | CR0_ET; // real mode
    let guest_cr4 = hw.rdmsr(VMX_CR4_FIXED0).unwrap_or(CR4VMXE);
    let fields: [(VmcsField, u64); 29] = [
        (PINB_CTLS, pin),
        (PROCB_CTLS, proc),
        (PROCB_CTLS2, proc2),
        (VMEXIT_CTLS, exit),
        (VMENTRY_CTLS, entry),
        (EXC_BITMAP, 0),
        (CR3_TARGCNT, 0),
        (VMENTRY_INTRINFO, 0),
        (VM_EPTP, Caps::eptp(pml4)),
        (VMCS_LINK, u64::MAX),
        (GUEST_IA32_PAT, 0x0007_0406_0007_0406),
        (GUEST_IA32_EFER, 0),
        (GUEST_CR0MASK, 0),
        (GUEST_CR4MASK, 0),
        (GUEST_CR0SHADOW, 0x30),
        (GUEST_CR4SHADOW, 0),
        (GUEST_CR0, guest_cr0),
        (GUEST_CR3, 0),
        (GUEST_CR4, guest_cr4),
        (GUEST_DR7, 0x400),
        (GUEST_RSP, 0x800),
        (GUEST_RIP, 0),
        (GUEST_RFLAGS, 2),
        (GUEST_PENDING_DBG, 0),
        (GUEST_CANINTR, 0),
        (GUEST_ACTIVITY, 0),
        (GUEST_SYSENTER_CS, 0),
        (GUEST_SYSENTER_ESP, 0),
        (GUEST_SYSENTER_EIP, 0),
    ];
    for (f, v) in fields {
        vm(hw.vmwrite(f, v), "vmwrite guest/control field")?;
    }
    // Segments ES CS SS DS FS GS LDTR TR: selector 0, base 0, limit 0xffff.
    let ar = [0x93, 0x9b, 0x93, 0x93, 0x93, 0x93, 0x1_0000, 0x8b];
    for (i, a) in (0..).zip(ar) {
        vm(hw.vmwrite(GUEST_ES.nth(i), 0), "vmwrite selector")?;
        vm(hw.vmwrite(GUEST_ESBASE.nth(i), 0), "vmwrite base")?;
        vm(hw.vmwrite(GUEST_ESLIMIT.nth(i), 0xffff), "vmwrite limit")?;
        vm(hw.vmwrite(GUEST_ESPERM.nth(i), a), "vmwrite access rights")?;
    }
    for (f, v) in [
        (GUEST_GDTRBASE, 0),
        (GUEST_IDTRBASE, 0),
        (GUEST_GDTRLIMIT, 0xffff),
        (GUEST_IDTRLIMIT, 0xffff),
    ] {
        vm(hw.vmwrite(f, v), "vmwrite descriptor table")?;
    }
    vm(hw.write_host_state(), "write_host_state")?;
    vm(hw.invept(Caps::eptp(pml4)), "invept")?;

    let mut st = EntryState::default();
    st.regs.ax = GUEST_AL;
    st.regs.r15 = 0x1515;
    st.xcr0 = 1;
    vm(hw.enter(false, &mut st), "vmlaunch")?;
    let reason = read(hw, VM_EXREASON)?;
    let qual = read(hw, VM_EXQUALIF)?;
    info!(
        env,
        "vmx selftest: exit {:#x} qual {:#x} ax {:#x}", reason, qual, st.regs.ax
    );
    if reason != EXIT_IO as u64
        || qual >> 16 != 0x80
        || st.regs.ax != GUEST_AL
        || st.regs.r15 != 0x1515
    {
        return Err("first exit is not out 0x80 with the guest's registers");
    }
    let rip = read(hw, GUEST_RIP)?;
    let len = read(hw, VM_EXINSTRLEN)?;
    vm(hw.vmwrite(GUEST_RIP, rip + len), "vmwrite rip")?;
    vm(hw.enter(true, &mut st), "vmresume")?;
    let reason = read(hw, VM_EXREASON)?;
    let rip = read(hw, GUEST_RIP)?;
    info!(env, "vmx selftest: exit {:#x} rip {:#x}", reason, rip);
    if reason != EXIT_HLT as u64 || rip != 2 {
        return Err("second exit is not hlt at 2");
    }
    vm(hw.vmwrite(GUEST_RIP, 3), "vmwrite rip")?;
    vm(
        hw.vmwrite(GUEST_RFLAGS, RFLAGS_IF | RFLAGS_RSVD1),
        "vmwrite rflags",
    )?;
    if env.interrupts_enabled() {
        let t0 = env.ticks();
        let mut exits = 0;
        while env.ticks() < t0 + 3 && exits < 100 {
            vm(hw.enter(true, &mut st), "vmresume")?;
            let reason = read(hw, VM_EXREASON)?;
            if reason != EXIT_EXTIRQ as u64 {
                error!(env, "vmx selftest: exit {:#x} while spinning", reason);
                return Err("spinning guest left other than by an external interrupt");
            }
            exits += 1;
        }
        let t1 = env.ticks();
        info!(
            env,
            "vmx selftest: {} external-interrupt exits, ticks {} -> {}", exits, t0, t1
        );
        if env.ticks() < t0 + 3 {
            return Err("host did not take the interrupts after external-interrupt exits");
        }
    } else {
        info!(
            env,
            "vmx selftest: interrupts off, external-interrupt exits not tried"
        );
    }
    preemption(hw, env, &mut st)?;
    // A VMRESUME of a cleared VMCS must fail cleanly, leaving the stack intact.
    vm(hw.vmclear(vmcs), "vmclear")?;
    vm(hw.vmptrld(vmcs), "vmptrld")?;
    if hw.enter(true, &mut st).is_ok() {
        return Err("vmresume of a clear VMCS did not fail");
    }
    info!(env, "vmx selftest: vmresume of a clear VMCS failed cleanly");
    Ok(())
}

/// The spinning guest with IF clear, bounded by the VMX preemption timer.
fn preemption<H: Hw, E: Env>(
    hw: &mut H,
    env: &mut E,
    st: &mut EntryState,
) -> Result<(), &'static str> {
    let cap = hw.rdmsr(VMX_PINB_CTLS_MSR).unwrap_or(0);
    if (cap >> 32) as u32 & PINB_PREEMPT == 0 {
        info!(env, "vmx selftest: no VMX preemption timer");
        return Ok(());
    }
    let pin = read(hw, PINB_CTLS)?;
    vm(
        hw.vmwrite(PINB_CTLS, pin | PINB_PREEMPT as u64),
        "vmwrite pin controls",
    )?;
    vm(hw.vmwrite(GUEST_RFLAGS, 2), "vmwrite rflags")?;
    vm(
        hw.vmwrite(VMX_PREEMPT_TIMER, 10_000),
        "vmwrite preemption timer",
    )?;
    let t0 = hw.rdtsc();
    vm(hw.enter(true, st), "vmresume")?;
    let reason = read(hw, VM_EXREASON)?;
    let rip = read(hw, GUEST_RIP)?;
    let cycles = hw.rdtsc() - t0;
    info!(
        env,
        "vmx selftest: IF=0 spin: exit {:#x} rip {:#x} after {} tsc cycles", reason, rip, cycles
    );
    vm(hw.vmwrite(PINB_CTLS, pin), "vmwrite pin controls")?;
    if reason != EXIT_PREEMPT as u64 || rip != 3 {
        return Err("preemption timer did not end the IF=0 spin");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testhw::{Exit, TestHw};
    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::Cell;

    /// Interrupts as asked; the clock ticks once each time it is read.
    struct Host {
        irqs: bool,
        clock: Cell<u64>,
        lines: Vec<(Level, String)>,
    }

    impl Env for Host {
        fn interrupts_enabled(&self) -> bool {
            self.irqs
        }
        fn ticks(&self) -> u64 {
            self.clock.set(self.clock.get() + 1);
            self.clock.get()
        }
        fn log(&mut self, level: Level, line: fmt::Arguments) {
            self.lines.push((level, line.to_string()));
        }
    }

    /// The exits Bochs gives the self-test's guest: `out 0x80, al` (2 bytes), `hlt` at 2,
    /// `spins` external interrupts, then the preemption timer at 3.
    fn bochs_like(hw: &mut TestHw, spins: usize) {
        let mut out = Exit::new(EXIT_IO.into());
        out.qual = 0x80_0040;
        out.ilen = 2;
        let mut hlt = Exit::new(EXIT_HLT.into());
        hlt.set = vec![(GUEST_RIP, 2)];
        hw.exits.extend([out, hlt]);
        hw.exits
            .extend(core::iter::repeat_n(Exit::new(EXIT_EXTIRQ.into()), spins));
        let mut preempt = Exit::new(EXIT_PREEMPT.into());
        preempt.set = vec![(GUEST_RIP, 3)];
        hw.exits.push_back(preempt);
    }

    fn run_with(hw: &mut TestHw, irqs: bool) -> (bool, Vec<(Level, String)>) {
        let mut host = Host {
            irqs,
            clock: Cell::new(100),
            lines: Vec::new(),
        };
        let ok = run(hw, &mut host);
        (ok, host.lines)
    }

    /// A passing run on a 16-frame TestHw with Bochs's exits: the machine after, and the log.
    fn passing(spins: usize, irqs: bool) -> (TestHw, Vec<(Level, String)>) {
        let mut hw = TestHw::new(16);
        bochs_like(&mut hw, spins);
        let (ok, lines) = run_with(&mut hw, irqs);
        assert!(ok, "{lines:?}");
        (hw, lines)
    }

    /// Each wanted line is in the log.
    fn logged(lines: &[(Level, String)], wants: &[&str]) {
        for want in wants {
            assert!(
                lines.iter().any(|(_, l)| l == want),
                "no {want:?} in {lines:?}"
            );
        }
    }

    #[test]
    fn passes_on_the_exits_a_real_cpu_gives() {
        // Interrupts on: the guest spins until the clock (a tick a read) has moved 3,
        // which takes two external-interrupt exits (reads 102, 103; 104 ends the loop and
        // the log reads 105); then the preemption timer ends the IF=0 spin.
        let (hw, lines) = passing(2, true);
        logged(
            &lines,
            &[
                "vmx selftest: exit 0x1e qual 0x800040 ax 0x5a",
                "vmx selftest: exit 0xc rip 0x2",
                "vmx selftest: 2 external-interrupt exits, ticks 101 -> 105",
                "vmx selftest: IF=0 spin: exit 0x34 rip 0x3 after 1000 tsc cycles",
                "vmx selftest: vmresume of a clear VMCS failed cleanly",
                "vmx selftest: ok",
            ],
        );
        // The controls it asked for, adjusted to the CPU's capabilities.
        let vmcs = hw.entries[0].vmcs;
        assert_eq!(
            hw.field(vmcs, PROCB_CTLS) as u32 & PROCB_EXITHLT,
            PROCB_EXITHLT
        );
        assert_eq!(
            hw.field(vmcs, PROCB_CTLS2) as u32,
            PROCB_EPT | PROCB_UNRESTR
        );
        // Every frame it took is given back, and VMX is off again.
        assert_eq!(hw.frames_free(), 16);
        assert!(!hw.vmx_on());
    }

    #[test]
    fn without_interrupts_skips_the_spin() {
        let (_, lines) = passing(0, false);
        logged(
            &lines,
            &[
                "vmx selftest: interrupts off, external-interrupt exits not tried",
                "vmx selftest: IF=0 spin: exit 0x34 rip 0x3 after 1000 tsc cycles",
                "vmx selftest: ok",
            ],
        );
    }

    #[test]
    fn a_wrong_exit_fails_with_the_reason() {
        let mut hw = TestHw::new(16);
        hw.exits.push_back(Exit::new(EXIT_HLT.into()));
        let (ok, lines) = run_with(&mut hw, false);
        assert!(!ok);
        let last = &lines.last().unwrap();
        assert_eq!(last.0, Level::Error);
        assert!(last
            .1
            .starts_with("vmx selftest: FAIL: first exit is not out 0x80"));
        assert_eq!(hw.frames_free(), 16, "frames given back on failure too");
    }

    #[test]
    fn no_vmx_fails_before_touching_anything() {
        let mut hw = TestHw::new(16);
        hw.cpuid_vmx = false;
        let (ok, lines) = run_with(&mut hw, false);
        assert!(!ok);
        assert_eq!(
            lines,
            [(
                Level::Error,
                "vmx selftest: FAIL: no VMX in CPUID (vm-instruction error 18446744073709551615)"
                    .to_string()
            )]
        );
    }
}
