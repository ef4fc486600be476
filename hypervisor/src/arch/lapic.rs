//! The local APIC, as far as starting and waking the other CPUs and the boot CPU's tick
//! need: this CPU's APIC ID, the interrupt command register (INIT, start-up, and a wake-up
//! IPI), the spurious vector and EOI, LINT0/1 in virtual-wire mode (the 8259's interrupts
//! pass through), the vector PCI devices' MSI and MSI-X messages arrive on, and the APIC
//! timer (TSC-deadline or periodic). x2APIC mode (MSRs) where CPUID offers it, else xAPIC
//! (MMIO at the base IA32_APIC_BASE gives, inside the identity map).
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

const MSR_APIC_BASE: u32 = 0x1b;
const BASE_ENABLE: u64 = 1 << 11;
const BASE_X2APIC: u64 = 1 << 10;
const MSR_X2_ID: u32 = 0x802;
const MSR_X2_ICR: u32 = 0x830;
const MSR_X2_EOI: u32 = 0x80b;
const MSR_X2_SVR: u32 = 0x80f;
const REG_ID: u64 = 0x20;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
/// SVR: the APIC software-enabled.
const SVR_ENABLE: u32 = 1 << 8;
const REG_ICR_LO: u64 = 0x300;
const REG_ICR_HI: u64 = 0x310;
const ICR_PENDING: u32 = 1 << 12;
/// ICR commands: INIT (level assert) and start-up (SIPI; the vector is the page number).
const ICR_INIT: u32 = 0x4500;
const ICR_STARTUP: u32 = 0x4600;
/// ICR: fixed delivery, level assert (OR the vector in).
const ICR_FIXED: u32 = 0x4000;
/// The local vector table's timer, LINT0 and LINT1 entries, the timer's initial and current
/// counts and its divide configuration (xAPIC offsets; x2APIC MSR 0x800 + offset / 16).
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_LINT1: u64 = 0x360;
const REG_TIMER_INIT: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;
const X2_MSR_BASE: u32 = 0x800;
/// LVT delivery modes (bits 8-10) and the mask bit.
const LVT_NMI: u32 = 0b100 << 8;
const LVT_EXTINT: u32 = 0b111 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// The LVT timer's modes (bits 17-18), the vector ORed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum TimerMode {
    OneShot = 0,
    Periodic = 1 << 17,
    TscDeadline = 2 << 17,
}
/// The timer's divide configuration value for "divide by 16".
const DIVIDE_16: u32 = 0b0011;
/// IA32_TSC_DEADLINE: the TSC value at which the timer fires in TSC-deadline mode.
const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// CPUID.1:ECX: the APIC timer has TSC-deadline mode.
const CPUID1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// The local APIC's vectors: from here to 63 (the PIC has 32-47).
pub const FIRST_VECTOR: u8 = 48;
/// The wake-up IPI: it only ends a `hlt` (the woken CPU looks at its mailbox).
pub const WAKE_VECTOR: u8 = 48;
/// The APIC timer's interrupt: the boot CPU's tick (timer.rs).
pub const TIMER_VECTOR: u8 = 49;
/// PCI devices' message-signalled interrupts (MSI and MSI-X), all on the boot CPU: each
/// only counts and wakes the idle loop, whose drivers then look at their devices.
pub const DEVICE_VECTOR: u8 = 50;
/// The spurious-interrupt vector (its low four bits set, as older APICs require).
const SPURIOUS_VECTOR: u8 = 63;

static X2: AtomicBool = AtomicBool::new(false);
static BASE: AtomicU64 = AtomicU64::new(0);
/// Set once the boot CPU's APIC is software-enabled: only then can a device message reach it.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Device messages taken on [`DEVICE_VECTOR`].
static MESSAGES: AtomicU32 = AtomicU32::new(0);

fn rdmsr(msr: u32) -> u64 {
    // SAFETY: only IA32_APIC_BASE and x2APIC registers are read, each after CPUID said the
    // APIC (and for the latter x2APIC mode) is there and enabled.
    unsafe { Msr::new(msr).read() }
}

fn wrmsr(msr: u32, v: u64) {
    // SAFETY: as for rdmsr, and IA32_TSC_DEADLINE only after CPUID said the timer has
    // TSC-deadline mode; the values written enable the APIC, send an IPI, set a local
    // vector entry or program the timer.
    unsafe { Msr::new(msr).write(v) }
}

fn mmio_read(reg: u64) -> u32 {
    // SAFETY: the xAPIC register page is identity-mapped device memory (init checked the
    // base is below 4 GiB); a 32-bit aligned read of a defined register.
    unsafe { core::ptr::read_volatile((BASE.load(Ordering::Relaxed) + reg) as *const u32) }
}

fn mmio_write(reg: u64, v: u32) {
    // SAFETY: as for mmio_read: a 32-bit write to a defined xAPIC register.
    unsafe { core::ptr::write_volatile((BASE.load(Ordering::Relaxed) + reg) as *mut u32, v) }
}

/// Which APIC interface this CPU has, after `init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    XApic,
    X2Apic,
}

/// Finds the boot CPU's local APIC and switches it to x2APIC mode where CPUID offers it.
/// None where there is no APIC (CPUID.1:EDX.APIC clear) or its page is not mapped.
pub fn init() -> Option<Mode> {
    let ecx_edx = core::arch::x86_64::__cpuid(1);
    if ecx_edx.edx & 1 << 9 == 0 {
        return None;
    }
    let mut base = rdmsr(MSR_APIC_BASE);
    if ecx_edx.ecx & 1 << 21 != 0 {
        if base & BASE_X2APIC == 0 {
            // xAPIC -> x2APIC is a legal transition only from enabled xAPIC mode.
            base |= BASE_ENABLE;
            wrmsr(MSR_APIC_BASE, base);
            wrmsr(MSR_APIC_BASE, base | BASE_X2APIC);
        }
        X2.store(true, Ordering::Relaxed);
        return Some(Mode::X2Apic);
    }
    let pa = base & 0xf_ffff_f000;
    if pa + 0x1000 > super::paging::LOW {
        return None;
    }
    if base & BASE_ENABLE == 0 {
        wrmsr(MSR_APIC_BASE, base | BASE_ENABLE);
    }
    BASE.store(pa, Ordering::Relaxed);
    Some(Mode::XApic)
}

/// Software-enables this CPU's local APIC (after `init`) so it takes fixed IPIs; its local
/// interrupt sources stay as the firmware or INIT left them (masked on an AP).
pub fn enable() {
    let svr = SVR_ENABLE | u32::from(SPURIOUS_VECTOR);
    if X2.load(Ordering::Relaxed) {
        wrmsr(MSR_X2_SVR, u64::from(svr));
    } else {
        mmio_write(REG_SVR, svr);
    }
    ENABLED.store(true, Ordering::Release);
}

/// Where a device's message-signalled interrupt goes: this CPU's APIC ID, once its APIC is
/// enabled (None before, and where there is none: such devices stay on INTx).
pub fn message_target() -> Option<u32> {
    ENABLED.load(Ordering::Acquire).then(id)
}

/// Device messages taken so far (wrapping): a driver that sees the count change looks at
/// its device.
pub fn messages() -> u32 {
    MESSAGES.load(Ordering::Acquire)
}

/// A local APIC vector came in: acknowledge it (not the spurious one, which takes no EOI).
pub(super) fn interrupt(vector: u8) {
    if vector == SPURIOUS_VECTOR {
        return;
    }
    if vector == WAKE_VECTOR {
        // The boot CPU's idle loop polls again (an AP has news for a pending read).
        super::cpu::wake();
    }
    if vector == TIMER_VECTOR {
        super::timer::apic_tick();
    }
    if vector == DEVICE_VECTOR {
        MESSAGES.fetch_add(1, Ordering::AcqRel);
        super::cpu::wake();
    }
    if X2.load(Ordering::Relaxed) {
        wrmsr(MSR_X2_EOI, 0);
    } else {
        mmio_write(REG_EOI, 0);
    }
}

/// The wake-up IPI to the CPU with APIC ID `dest`.
pub fn send_wake(dest: u32) {
    send(dest, ICR_FIXED | u32::from(WAKE_VECTOR));
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    if X2.load(Ordering::Relaxed) {
        rdmsr(MSR_X2_ID) as u32
    } else {
        mmio_read(REG_ID) >> 24
    }
}

fn send(dest: u32, cmd: u32) {
    if X2.load(Ordering::Relaxed) {
        wrmsr(MSR_X2_ICR, u64::from(dest) << 32 | u64::from(cmd));
    } else {
        mmio_write(REG_ICR_HI, dest << 24);
        mmio_write(REG_ICR_LO, cmd);
        while mmio_read(REG_ICR_LO) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
    }
}

/// INIT to the CPU with APIC ID `dest`: it resets into wait-for-SIPI.
pub fn send_init(dest: u32) {
    send(dest, ICR_INIT);
}

/// A start-up IPI: `dest` starts in real mode at `page`'s first byte (below 1 MiB).
pub fn send_startup(dest: u32, page: u64) {
    debug_assert!(page < 0x10_0000 && page.is_multiple_of(4096));
    send(dest, ICR_STARTUP | (page >> 12) as u32);
}

/// Reads the register at xAPIC offset `reg` in whichever mode this CPU's APIC is.
fn read_reg(reg: u64) -> u32 {
    if X2.load(Ordering::Relaxed) {
        rdmsr(X2_MSR_BASE + (reg >> 4) as u32) as u32
    } else {
        mmio_read(reg)
    }
}

/// Writes the register at xAPIC offset `reg` in whichever mode this CPU's APIC is.
fn write_reg(reg: u64, v: u32) {
    if X2.load(Ordering::Relaxed) {
        wrmsr(X2_MSR_BASE + (reg >> 4) as u32, u64::from(v));
    } else {
        mmio_write(reg, v);
    }
}

/// The boot CPU in virtual-wire mode: LINT0 takes the 8259's interrupts (ExtINT), LINT1
/// NMIs, as the MP specification sets them; the firmware may have left them masked.
pub fn virtual_wire() {
    write_reg(REG_LVT_LINT0, LVT_EXTINT);
    write_reg(REG_LVT_LINT1, LVT_NMI);
}

/// Whether this CPU's APIC timer offers TSC-deadline mode.
pub fn has_tsc_deadline() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & CPUID1_ECX_TSC_DEADLINE != 0
}

/// Programs the timer: `mode` on [`TIMER_VECTOR`] (masked where `masked`), counting the
/// bus clock divided by 16 down from `count` (ignored in TSC-deadline mode).
pub fn timer(mode: TimerMode, count: u32, masked: bool) {
    let mask = if masked { LVT_MASKED } else { 0 };
    write_reg(REG_TIMER_DIVIDE, DIVIDE_16);
    write_reg(REG_LVT_TIMER, mode as u32 | mask | u32::from(TIMER_VECTOR));
    if mode != TimerMode::TscDeadline {
        write_reg(REG_TIMER_INIT, count);
    }
}

/// The timer's current count (one-shot and periodic modes).
pub fn timer_current() -> u32 {
    read_reg(REG_TIMER_CURRENT)
}

/// Arms TSC-deadline mode: the timer fires when the TSC reaches `tsc`.
pub fn set_deadline(tsc: u64) {
    wrmsr(MSR_TSC_DEADLINE, tsc);
}
