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

use super::fields::*;
use super::KernelHw;
use devvmx::hw::{EntryState, Hw, VmxFail};

const GUEST_CODE: [u8; 5] = [0xe6, 0x80, 0xf4, 0xeb, 0xfe]; // out 0x80, al; hlt; jmp $
const GUEST_AL: u64 = 0x5a;

/// Adjusts `want` to a VMX capability MSR: allowed-0 bits forced on, allowed-1 bits only.
fn adjust(hw: &mut KernelHw, msr: u32, want: u32) -> Result<u64, &'static str> {
    let cap = hw.rdmsr(msr).ok_or("capability msr missing")?;
    Ok(((want | cap as u32) & (cap >> 32) as u32) as u64)
}

/// Runs the self-test, logging each step; true when the guest exited as expected.
pub fn run() -> bool {
    let mut hw = KernelHw::new();
    match run_on(&mut hw) {
        Ok(()) => {
            log::info!("vmx selftest: ok");
            true
        }
        Err(e) => {
            let err = hw.vmread(VM_INSTR_ERROR).unwrap_or(u64::MAX);
            log::error!("vmx selftest: FAIL: {} (vm-instruction error {})", e, err);
            false
        }
    }
}

fn vm(r: Result<(), VmxFail>, what: &'static str) -> Result<(), &'static str> {
    r.map_err(|_| what)
}

fn run_on(hw: &mut KernelHw) -> Result<(), &'static str> {
    if hw.cpuid(1, 0)[2] & (1 << 5) == 0 {
        return Err("no VMX in CPUID");
    }
    let fc = hw.rdmsr(0x3a).ok_or("no IA32_FEATURE_CONTROL")?;
    if fc & 1 == 0 && !hw.wrmsr(0x3a, fc | 5) {
        return Err("cannot enable VMXON in IA32_FEATURE_CONTROL");
    }
    let basic = hw.rdmsr(0x480).ok_or("no VMX_BASIC")?;
    let fixed = |hw: &mut KernelHw, m: u32| -> Result<(u64, u64), &'static str> {
        Ok((
            hw.rdmsr(m).ok_or("no fixed msr")?,
            hw.rdmsr(m + 1).ok_or("no fixed msr")?,
        ))
    };
    let (c0f0, c0f1) = fixed(hw, 0x486)?;
    let (c4f0, c4f1) = fixed(hw, 0x488)?;
    let cr0 = (hw.cr0() | c0f0) & c0f1;
    let cr4 = (hw.cr4() | c4f0) & c4f1;
    hw.set_cr0(cr0);
    hw.set_cr4(cr4);
    log::info!(
        "vmx selftest: basic {:#x} cr0 {:#x} cr4 {:#x}",
        basic,
        cr0,
        cr4
    );
    let caps = [
        ("pin", 0x481),
        ("proc", 0x482),
        ("proc2", 0x48b),
        ("exit", 0x483),
        ("entry", 0x484),
        ("misc", 0x485),
    ];
    for (name, msr) in caps {
        log::info!(
            "vmx selftest: {} controls {:#x}",
            name,
            hw.rdmsr(msr).unwrap_or(0)
        );
    }

    let rev = (basic & 0x7fff_ffff) as u32;
    let vmxon = hw.alloc_frame().ok_or("no memory")?;
    let vmcs = hw.alloc_frame().ok_or("no memory")?;
    let pml4 = hw.alloc_frame().ok_or("no memory")?;
    let pdpt = hw.alloc_frame().ok_or("no memory")?;
    let pd = hw.alloc_frame().ok_or("no memory")?;
    let pt = hw.alloc_frame().ok_or("no memory")?;
    let page = hw.alloc_frame().ok_or("no memory")?;
    hw.frame(vmxon)[..4].copy_from_slice(&rev.to_le_bytes());
    hw.frame(vmcs)[..4].copy_from_slice(&rev.to_le_bytes());
    // EPT: guest-physical page 0 -> `page`, RWX, write-back leaf.
    let link = |hw: &mut KernelHw, table: u64, next: u64| {
        hw.frame(table)[..8].copy_from_slice(&(next | 7).to_le_bytes());
    };
    link(hw, pml4, pdpt);
    link(hw, pdpt, pd);
    link(hw, pd, pt);
    hw.frame(pt)[..8].copy_from_slice(&(page | 7 | 6 << 3).to_le_bytes());
    hw.frame(page)[..GUEST_CODE.len()].copy_from_slice(&GUEST_CODE);

    vm(hw.vmxon(vmxon), "vmxon")?;
    let result = guest(hw, vmcs, pml4);
    hw.vmxoff();
    for f in [vmxon, vmcs, pml4, pdpt, pd, pt, page] {
        hw.free_frame(f);
    }
    result
}

fn guest(hw: &mut KernelHw, vmcs: u64, pml4: u64) -> Result<(), &'static str> {
    vm(hw.vmclear(vmcs), "vmclear")?;
    vm(hw.vmptrld(vmcs), "vmptrld")?;
    let pin = adjust(hw, 0x481, 1)?; // external-interrupt exiting
    let proc = adjust(hw, 0x482, 1 << 7 | 1 << 24 | 1 << 31)?; // hlt, io, secondary
    let proc2 = adjust(hw, 0x48b, 1 << 1 | 1 << 7)?; // EPT, unrestricted guest
    let exit = adjust(hw, 0x483, 1 << 9 | 1 << 19 | 1 << 21)?; // 64-bit host, load PAT/EFER
    let entry = adjust(hw, 0x484, 1 << 14 | 1 << 15)?; // load PAT/EFER
    let c0f0 = hw.rdmsr(0x486).unwrap_or(0);
    let guest_cr0 = (c0f0 & !(1 | 1 << 31)) | 0x30; // real mode: no PE/PG, NE|ET
    let guest_cr4 = hw.rdmsr(0x488).unwrap_or(0x2000);
    let fields: [(u32, u64); 29] = [
        (PIN_CTLS, pin),
        (PROC_CTLS, proc),
        (PROC_CTLS2, proc2),
        (EXIT_CTLS, exit),
        (ENTRY_CTLS, entry),
        (EXC_BITMAP, 0),
        (CR3_TARGET_COUNT, 0),
        (ENTRY_INTR_INFO, 0),
        (EPTP, pml4 | 3 << 3 | 6),
        (VMCS_LINK, u64::MAX),
        (GUEST_PAT, 0x0007_0406_0007_0406),
        (GUEST_EFER, 0),
        (CR0_MASK, 0),
        (CR4_MASK, 0),
        (CR0_SHADOW, 0x30),
        (CR4_SHADOW, 0),
        (GUEST_CR0, guest_cr0),
        (GUEST_CR3, 0),
        (GUEST_CR4, guest_cr4),
        (GUEST_DR7, 0x400),
        (GUEST_RSP, 0x800),
        (GUEST_RIP, 0),
        (GUEST_RFLAGS, 2),
        (GUEST_PENDING_DBG, 0),
        (GUEST_INTERRUPTIBILITY, 0),
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
    for (i, a) in ar.into_iter().enumerate() {
        let i = i as u32 * 2;
        vm(hw.vmwrite(GUEST_ES_SEL + i, 0), "vmwrite selector")?;
        vm(hw.vmwrite(GUEST_ES_BASE + i, 0), "vmwrite base")?;
        vm(hw.vmwrite(GUEST_ES_LIMIT + i, 0xffff), "vmwrite limit")?;
        vm(hw.vmwrite(GUEST_ES_AR + i, a), "vmwrite access rights")?;
    }
    for (f, v) in [
        (GUEST_GDTR_BASE, 0),
        (GUEST_IDTR_BASE, 0),
        (GUEST_GDTR_LIMIT, 0xffff),
        (GUEST_IDTR_LIMIT, 0xffff),
    ] {
        vm(hw.vmwrite(f, v), "vmwrite descriptor table")?;
    }
    vm(hw.write_host_state(), "write_host_state")?;
    vm(hw.invept(pml4 | 3 << 3 | 6), "invept")?;

    let mut st = EntryState::default();
    st.regs.ax = GUEST_AL;
    st.regs.r15 = 0x1515;
    st.xcr0 = 1;
    vm(hw.enter(false, &mut st), "vmlaunch")?;
    let reason = hw.vmread(EXIT_REASON).map_err(|_| "vmread")?;
    let qual = hw.vmread(EXIT_QUALIFICATION).map_err(|_| "vmread")?;
    log::info!(
        "vmx selftest: exit {:#x} qual {:#x} ax {:#x}",
        reason,
        qual,
        st.regs.ax
    );
    if reason != 30 || qual >> 16 != 0x80 || st.regs.ax != GUEST_AL || st.regs.r15 != 0x1515 {
        return Err("first exit is not out 0x80 with the guest's registers");
    }
    let rip = hw.vmread(GUEST_RIP).map_err(|_| "vmread")?;
    let len = hw.vmread(EXIT_INSTR_LEN).map_err(|_| "vmread")?;
    vm(hw.vmwrite(GUEST_RIP, rip + len), "vmwrite rip")?;
    vm(hw.enter(true, &mut st), "vmresume")?;
    let reason = hw.vmread(EXIT_REASON).map_err(|_| "vmread")?;
    let rip = hw.vmread(GUEST_RIP).map_err(|_| "vmread")?;
    log::info!("vmx selftest: exit {:#x} rip {:#x}", reason, rip);
    if reason != 12 || rip != 2 {
        return Err("second exit is not hlt at 2");
    }
    vm(hw.vmwrite(GUEST_RIP, 3), "vmwrite rip")?;
    vm(hw.vmwrite(GUEST_RFLAGS, 0x202), "vmwrite rflags")?;
    if super::insn::interrupts_enabled() {
        let t0 = crate::arch::pit::ticks();
        let mut exits = 0;
        while crate::arch::pit::ticks() < t0 + 3 && exits < 100 {
            vm(hw.enter(true, &mut st), "vmresume")?;
            let reason = hw.vmread(EXIT_REASON).map_err(|_| "vmread")?;
            if reason != 1 {
                log::error!("vmx selftest: exit {:#x} while spinning", reason);
                return Err("spinning guest left other than by an external interrupt");
            }
            exits += 1;
        }
        log::info!(
            "vmx selftest: {} external-interrupt exits, ticks {} -> {}",
            exits,
            t0,
            crate::arch::pit::ticks()
        );
        if crate::arch::pit::ticks() < t0 + 3 {
            return Err("host did not take the interrupts after external-interrupt exits");
        }
    } else {
        log::info!("vmx selftest: interrupts off, external-interrupt exits not tried");
    }
    preemption(hw, &mut st)?;
    // A VMRESUME of a cleared VMCS must fail cleanly, leaving the stack intact.
    vm(hw.vmclear(vmcs), "vmclear")?;
    vm(hw.vmptrld(vmcs), "vmptrld")?;
    if hw.enter(true, &mut st).is_ok() {
        return Err("vmresume of a clear VMCS did not fail");
    }
    log::info!("vmx selftest: vmresume of a clear VMCS failed cleanly");
    Ok(())
}

/// The spinning guest with IF clear, bounded by the VMX preemption timer (pin control 6).
fn preemption(hw: &mut KernelHw, st: &mut EntryState) -> Result<(), &'static str> {
    let cap = hw.rdmsr(0x481).unwrap_or(0);
    if cap >> 32 & 1 << 6 == 0 {
        log::info!("vmx selftest: no VMX preemption timer");
        return Ok(());
    }
    let pin = hw.vmread(PIN_CTLS).map_err(|_| "vmread")?;
    vm(hw.vmwrite(PIN_CTLS, pin | 1 << 6), "vmwrite pin controls")?;
    vm(hw.vmwrite(GUEST_RFLAGS, 2), "vmwrite rflags")?;
    vm(
        hw.vmwrite(PREEMPTION_TIMER, 10_000),
        "vmwrite preemption timer",
    )?;
    let t0 = hw.rdtsc();
    vm(hw.enter(true, st), "vmresume")?;
    let reason = hw.vmread(EXIT_REASON).map_err(|_| "vmread")?;
    let rip = hw.vmread(GUEST_RIP).map_err(|_| "vmread")?;
    log::info!(
        "vmx selftest: IF=0 spin: exit {:#x} rip {:#x} after {} tsc cycles",
        reason,
        rip,
        hw.rdtsc() - t0
    );
    vm(hw.vmwrite(PIN_CTLS, pin), "vmwrite pin controls")?;
    if reason != 52 || rip != 3 {
        return Err("preemption timer did not end the IF=0 spin");
    }
    Ok(())
}
