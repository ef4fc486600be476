//! Cross-CPU calls: the boot CPU hands another CPU a closure over that CPU's `KernelHw`
//! and waits until it has run there (a VM's VMCS is only touched on its own CPU). The
//! CPU runs it from its loop, between two guest entries (the preemption timer bounds
//! each) or when its wake-up IPI brings it out of `hlt`.
#![allow(unsafe_code)]

use super::vmx::KernelHw;
use super::MAX_CPUS;
use spin::Mutex;

type Call = dyn FnMut(&mut KernelHw);

/// A closure posted by `call`, borrowed for as long as it sits in a slot.
struct Posted(*mut Call);

// SAFETY: the pointer is only dereferenced by the CPU owning the slot, under the slot's
// lock, while `call` (which owns the borrow) spins until the slot is empty again.
unsafe impl Send for Posted {}

static SLOT: [Mutex<Option<Posted>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];

/// Runs `f` on CPU `cpu`: posts it in that CPU's slot, calls `ring` (post the CPU's
/// mailbox and send its wake-up IPI), and returns once the CPU has run it. One call at
/// a time per CPU: only the boot CPU calls.
pub fn call(cpu: usize, f: &mut dyn FnMut(&mut KernelHw), ring: impl FnOnce()) {
    let Some(slot) = SLOT.get(cpu) else {
        return;
    };
    let short: *mut (dyn FnMut(&mut KernelHw) + '_) = f;
    // SAFETY: only the lifetime bound changes; the pointer leaves the slot (taken by
    // `serve`, which runs it under the slot's lock) before this function returns, and
    // `f`'s borrow lasts until then.
    let long =
        unsafe { core::mem::transmute::<*mut (dyn FnMut(&mut KernelHw) + '_), *mut Call>(short) };
    *slot.lock() = Some(Posted(long));
    ring();
    while slot.lock().is_some() {
        core::hint::spin_loop();
    }
}

/// On CPU `cpu`: runs the call posted for it, if any.
pub fn serve(cpu: usize, hw: &mut KernelHw) {
    let Some(slot) = SLOT.get(cpu) else {
        return;
    };
    let mut s = slot.lock();
    if let Some(Posted(p)) = s.take() {
        // SAFETY: `call` posted this pointer from a live `&mut` and spins until the slot
        // is empty, which it becomes only when this lock is released after the call.
        unsafe { (*p)(hw) };
    }
}
