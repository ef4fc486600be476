//! The other CPUs: found in the firmware's tables (cpus.rs), started one by one through the
//! local APIC and the trampoline (arch::ap), each given its own GDT, TSS and stacks, its
//! FPU and VMX set up and VMX's capabilities checked as on the boot CPU; then parked.

use crate::arch::{self, ap, lapic};
use crate::bootinfo::Region;
use crate::cpus;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

/// Each AP's kernel stack.
const STACK_SIZE: usize = 64 * 1024;

/// What an AP found about itself, filled in on that CPU.
struct PerCpu {
    apic: u32,
    /// vmxreset's verdict on this CPU (the boot CPU's is the namespace's).
    vmx: Result<(), String>,
    /// This CPU's architecture layer (FPU and XCR0 set up on it), for its VMs.
    #[allow(dead_code)] // the AP's VMs will use it
    hw: arch::vmx::KernelHw,
}

static APS: Mutex<Vec<Option<PerCpu>>> = Mutex::new(Vec::new());
/// Set by an AP once it has filled in its PerCpu.
static ONLINE: AtomicBool = AtomicBool::new(false);

/// Starts every CPU the firmware lists; returns how many CPUs run (1: only this one).
/// Interrupts must be on. `ram` and `reserved` (the loader's structures) decide whether
/// the trampoline page is free.
pub fn start_aps(ram: &[Region], reserved: &[Region]) -> usize {
    let Some((src, ids)) = cpus::discover(&arch::phys::firmware_bytes) else {
        log::info!("smp: no MADT or MP table lists the CPUs; one CPU");
        return 1;
    };
    let Some(mode) = lapic::init() else {
        log::warn!("smp: {} CPUs listed but no local APIC; one CPU", ids.len());
        return 1;
    };
    let boot = lapic::id();
    let aps = cpus::application_processors(&ids, boot);
    log::info!(
        "smp: {} CPUs in the {src:?} (APIC IDs {ids:?}); boot CPU APIC {boot}, {mode:?}",
        ids.len()
    );
    if aps.is_empty() {
        return 1;
    }
    if !crate::frames::page_free(ap::TRAMPOLINE, ram, reserved) {
        log::warn!(
            "smp: trampoline page {:#x} is not free RAM; one CPU",
            ap::TRAMPOLINE
        );
        return 1;
    }
    ap::install();
    let mut n = 1;
    for apic in aps {
        APS.lock().push(None);
        ONLINE.store(false, Ordering::Release);
        let stack = alloc::vec![0u8; STACK_SIZE].leak();
        let top = (stack.as_ptr() as u64 + STACK_SIZE as u64) & !15;
        if !ap::start(apic, n, top) {
            // A late starter would take the next AP's parameters: start no more.
            log::warn!("smp: cpu {n} (APIC {apic}) did not start; no more CPUs started");
            break;
        }
        while !ONLINE.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        match &APS.lock()[n - 1] {
            Some(c) => match &c.vmx {
                Ok(()) => log::info!("smp: cpu {n} (APIC {}) online, vmx ok", c.apic),
                Err(why) => log::info!("smp: cpu {n} (APIC {}) online, no vmx: {why}", c.apic),
            },
            None => log::warn!("smp: cpu {n} online without its state"),
        }
        n += 1;
    }
    n
}

/// An AP's first Rust, on its own stack: its own descriptor tables, the shared IDT, its
/// FPU and VMX checks; then it parks until VMs are given to it.
pub fn ap_main(cpu: usize) -> ! {
    arch::gdt::init_ap();
    arch::idt::init();
    let mut hw = arch::vmx::KernelHw::new();
    let vmx = devvmx::vmxreset(&mut hw);
    // The same APIC mode as the boot CPU's (x2APIC registers fault in xAPIC mode).
    lapic::init();
    let apic = lapic::id();
    if let Some(slot) = APS.lock().get_mut(cpu - 1) {
        *slot = Some(PerCpu { apic, vmx, hw });
    }
    ONLINE.store(true, Ordering::Release);
    arch::cpu::park()
}
