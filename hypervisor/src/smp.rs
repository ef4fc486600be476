//! The other CPUs: found in the firmware's tables (cpus.rs), started one by one through the
//! local APIC and the trampoline (arch::ap), each given its own GDT, TSS and stacks, its
//! FPU set up, VMX's capabilities checked as on the boot CPU and VMXON done on a region of
//! its own; then it waits for work in its mailbox, halted with interrupts on, woken by an
//! IPI. The boot CPU rings each one once at start-up to prove the way works.

use crate::arch::{self, ap, lapic};
use crate::bootinfo::Region;
use crate::cpus;
use crate::mailbox::Mailbox;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use devvmx::place::RunList;
use devvmx::vtx;
use spin::Mutex;

/// Each AP's kernel stack.
const STACK_SIZE: usize = 64 * 1024;

/// What an AP found about itself, filled in on that CPU.
struct PerCpu {
    apic: u32,
    /// This CPU's VMXON region (it stays in VMX root operation, ready for VMs), or why
    /// VT-x cannot run here: vmxreset's checks, then vmxstart's (the boot CPU's are the
    /// namespace's).
    vmx: Result<devvmx::hw::Frame, String>,
}

static APS: Mutex<Vec<Option<PerCpu>>> = Mutex::new(Vec::new());
/// Each CPU's doorbell, by CPU number (the boot CPU's, 0, is unused).
static MAILBOX: [Mailbox; cpus::MAX_CPUS] = [const { Mailbox::new() }; cpus::MAX_CPUS];
/// The VMs each CPU runs, handed over by `give_vms` once the namespace exists.
static RUNS: [Mutex<Option<Arc<RunList>>>; cpus::MAX_CPUS] =
    [const { Mutex::new(None) }; cpus::MAX_CPUS];
/// The boot CPU's APIC ID, for the APs' wake-ups when their VMs have news.
static BOOT_APIC: AtomicU32 = AtomicU32::new(0);
/// Set by an AP once it has filled in its PerCpu.
static ONLINE: AtomicBool = AtomicBool::new(false);

/// Starts the CPUs the firmware lists, at most `max` in all when given; returns how many
/// CPUs run (1: only this one). Interrupts must be on. `ram` and `reserved` (the loader's
/// structures) decide whether the trampoline page is free.
pub fn start_aps(ram: &[Region], reserved: &[Region], max: Option<usize>) -> usize {
    let Some((src, ids)) = cpus::discover(&arch::phys::firmware_bytes) else {
        log::info!("smp: no MADT or MP table lists the CPUs; one CPU");
        return 1;
    };
    if ids.len() < 2 || max == Some(1) {
        // One CPU to run: no APs to wake (timer.rs has started the tick already).
        log::info!("smp: {} CPUs in the {src:?}; one CPU", ids.len());
        return 1;
    }
    let Some(mode) = lapic::init() else {
        log::warn!("smp: {} CPUs listed but no local APIC; one CPU", ids.len());
        return 1;
    };
    let boot = lapic::id();
    BOOT_APIC.store(boot, Ordering::Release);
    let mut aps = cpus::application_processors(&ids, boot);
    aps.truncate(max.unwrap_or(usize::MAX).saturating_sub(1));
    log::info!(
        "smp: {} CPUs in the {src:?} (APIC IDs {ids:?}); boot CPU APIC {boot}, {mode:?}; \
         starting {}",
        ids.len(),
        aps.len()
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
    ap::install(ap_main);
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
        // Its set-up is short; a fault in it stops the machine (trap.rs). A second is
        // plenty, and a CPU that takes longer is not waited for.
        if !arch::timer::wait(100, || ONLINE.load(Ordering::Acquire)) {
            log::warn!(
                "smp: cpu {n} (APIC {apic}) started but never came online; no more CPUs started"
            );
            break;
        }
        match &APS.lock()[n - 1] {
            Some(c) => match &c.vmx {
                Ok(region) => log::info!(
                    "smp: cpu {n} (APIC {}) online, vmx ok (VMXON region {:#x})",
                    c.apic,
                    region.pa()
                ),
                Err(why) => log::info!("smp: cpu {n} (APIC {}) online, no vmx: {why}", c.apic),
            },
            None => log::warn!("smp: cpu {n} online without its state"),
        }
        n += 1;
    }
    ring_all(n);
    n
}

/// Rings every AP's doorbell twice and waits (at start-up only, up to a second each) for
/// each to answer: the second ring comes a timer tick after the first was served, when
/// the AP is back in `hlt` with nothing but the IPI to wake it.
fn ring_all(n: usize) {
    let apics: Vec<Option<u32>> = APS
        .lock()
        .iter()
        .map(|c| c.as_ref().map(|c| c.apic))
        .collect();
    for (i, apic) in apics.into_iter().enumerate().take(n - 1) {
        let cpu = i + 1;
        let Some(apic) = apic else { continue };
        let ring = || {
            let ticket = MAILBOX[cpu].post();
            lapic::send_wake(apic);
            arch::timer::wait(100, || MAILBOX[cpu].done(ticket))
        };
        if ring() && !arch::timer::wait(1, || false) && ring() {
            log::info!("smp: cpu {cpu} answers its doorbell");
        } else {
            log::warn!("smp: cpu {cpu} did not answer its doorbell");
        }
    }
}

/// The APs that can run VMs (online, VMXON done).
pub fn vm_cpus() -> Vec<usize> {
    APS.lock()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.as_ref().is_some_and(|c| c.vmx.is_ok()))
        .map(|(i, _)| i + 1)
        .collect()
}

/// Gives CPU `cpu` the list of VMs it runs.
pub fn give_vms(cpu: usize, list: Arc<RunList>) {
    if let Some(r) = RUNS.get(cpu) {
        *r.lock() = Some(list);
    }
}

/// Runs `f` on AP `cpu` with its layer, waiting until it has (between two of its guest
/// entries, or at once when it is halted: the wake-up IPI brings it round).
pub fn call(cpu: usize, f: &mut dyn FnMut(&mut arch::vmx::KernelHw)) {
    let apic = APS
        .lock()
        .get(cpu.wrapping_sub(1))
        .and_then(|c| c.as_ref().map(|c| c.apic));
    let Some(apic) = apic else {
        log::error!("smp: call for cpu {cpu}, which is not online");
        return;
    };
    arch::xcall::call(cpu, f, || {
        MAILBOX[cpu].post();
        lapic::send_wake(apic);
    });
}

/// An AP's first Rust, on its own stack: its own descriptor tables, the shared IDT, its
/// FPU and VMX checks; then it serves its mailbox (calls from the boot CPU) and runs its
/// VMs, halted when none runs.
pub fn ap_main(cpu: usize) -> ! {
    arch::gdt::init_ap();
    arch::idt::init();
    let mut hw = arch::vmx::KernelHw::new().on(cpu);
    let vmx = vtx::vmxreset(&mut hw).and_then(|caps| {
        vtx::vmx_cpu_ready(&mut hw, &caps)
            .and_then(|()| vtx::vmxon_region(&mut hw, &caps))
            .map_err(|e| String::from(&*e.0))
    });
    // The same APIC mode as the boot CPU's (x2APIC registers fault in xAPIC mode).
    lapic::init();
    let apic = lapic::id();
    if let Some(slot) = APS.lock().get_mut(cpu - 1) {
        *slot = Some(PerCpu { apic, vmx });
    }
    lapic::enable();
    ONLINE.store(true, Ordering::Release);
    let mb = &MAILBOX[cpu];
    loop {
        if let Some(ticket) = mb.pending() {
            mb.serve(ticket);
        }
        arch::xcall::serve(cpu, &mut hw);
        let list = RUNS[cpu].lock().clone();
        // This CPU has no timer interrupt: a guest halted for its in-kernel devices
        // is polled (their time is the TSC) rather than waited for in hlt.
        let Some(l) = list else {
            arch::cpu::halt_unless(|| mb.pending().is_some());
            continue;
        };
        let busy = l.run(&mut hw, &mut |hw| arch::xcall::serve(cpu, hw));
        if l.take_news() {
            // A wait or cons read may be answered now: the boot CPU may be halted.
            lapic::send_wake(BOOT_APIC.load(Ordering::Acquire));
        }
        if busy || l.running() {
            core::hint::spin_loop();
        } else {
            arch::cpu::halt_unless(|| mb.pending().is_some());
        }
    }
}
