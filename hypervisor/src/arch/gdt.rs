//! The kernel's GDT (null, code 0x08, data 0x10, 64-bit TSS 0x18) and TSS, one of each per
//! CPU (the boot CPU's static, the others' made at start-up). VMX host state reads the
//! live CPU's.
#![allow(unsafe_code)]

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

pub const KCODE: u16 = 0x08;
pub const KDATA: u16 = 0x10;
pub const TSS_SEL: u16 = 0x18;

/// The IST slot the double-fault handler runs on (a known-good stack).
pub const DOUBLE_FAULT_IST: u16 = 1;

const IST_SIZE: usize = 32 * 1024;

#[repr(align(16))]
#[allow(dead_code)] // only the CPU reads it
struct Stack([u8; IST_SIZE]);
// Written only by the CPU when it switches to the IST.
static mut IST_STACK: Stack = Stack([0; IST_SIZE]);

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<GlobalDescriptorTable> = Once::new();

/// The boot CPU's tables (statics).
pub fn init() {
    let tss = TSS.call_once(|| {
        // Only the address is taken; the CPU alone writes the stack.
        tss_with_ist(core::ptr::addr_of!(IST_STACK) as u64 + IST_SIZE as u64)
    });
    load(GDT.call_once(|| build(tss)));
}

/// An application processor's own TSS, double-fault stack and GDT (same layout as the
/// boot CPU's), made once per CPU and never freed.
pub fn init_ap() {
    let ist = alloc::vec![0u8; IST_SIZE].leak();
    let top = (ist.as_ptr() as u64 + IST_SIZE as u64) & !15;
    let tss: &'static TaskStateSegment =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(tss_with_ist(top)));
    load(alloc::boxed::Box::leak(alloc::boxed::Box::new(build(tss))));
}

fn tss_with_ist(top: u64) -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[(DOUBLE_FAULT_IST - 1) as usize] = VirtAddr::new(top);
    tss
}

fn build(tss: &'static TaskStateSegment) -> GlobalDescriptorTable {
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    assert_eq!(
        (code.0, data.0, tss_sel.0),
        (KCODE, KDATA, TSS_SEL),
        "GDT layout"
    );
    gdt
}

fn load(gdt: &'static GlobalDescriptorTable) {
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded; the TSS lives forever and
    // is loaded once on this CPU (its descriptor is this CPU's own).
    unsafe {
        CS::set_reg(SegmentSelector::new(KCODE >> 3, PrivilegeLevel::Ring0));
        let data = SegmentSelector::new(KDATA >> 3, PrivilegeLevel::Ring0);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(SegmentSelector::new(TSS_SEL >> 3, PrivilegeLevel::Ring0));
    }
}

#[allow(dead_code)] // contract for VMX host state (arch/vmx reads the live CPU instead)
pub fn gdt_base() -> u64 {
    GDT.get().map_or(0, |g| g as *const _ as u64)
}

#[allow(dead_code)] // contract for VMX host state
pub fn tss_base() -> u64 {
    TSS.get().map_or(0, |t| t as *const _ as u64)
}
