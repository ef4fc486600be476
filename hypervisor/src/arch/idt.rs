//! The IDT: 64 gates (exceptions 0-31, PIC IRQs 32-47, local APIC vectors 48-63) to the
//! stubs in trap.rs.
#![allow(unsafe_code)]

use super::gdt::{DOUBLE_FAULT_IST, KCODE};
use spin::Once;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Gate {
    off_lo: u16,
    sel: u16,
    ist: u8,
    attr: u8,
    off_mid: u16,
    off_hi: u32,
    zero: u32,
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Builds the IDT (once) and loads it on this CPU; every CPU shares it.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = Idt([Gate::default(); 256]);
        for (v, &addr) in super::trap::stubs().iter().enumerate() {
            idt.0[v] = Gate {
                off_lo: addr as u16,
                sel: KCODE,
                ist: if v == 8 { DOUBLE_FAULT_IST as u8 } else { 0 },
                attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
                off_mid: (addr >> 16) as u16,
                off_hi: (addr >> 32) as u32,
                zero: 0,
            };
        }
        idt
    });
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const _ as u64),
    };
    // SAFETY: the IDT is a static that lives forever and its gates point at valid stubs.
    unsafe { lidt(&ptr) }
}

#[allow(dead_code)] // contract for VMX host state
pub fn idt_base() -> u64 {
    IDT.get().map_or(0, |i| i as *const _ as u64)
}
