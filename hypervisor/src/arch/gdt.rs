//! The kernel's GDT (null, code 0x08, data 0x10, 64-bit TSS 0x18) and TSS. VMX host state
//! reads the bases from here.

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

pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        // Only the address is taken; the CPU alone writes the stack.
        let top = core::ptr::addr_of!(IST_STACK) as u64 + IST_SIZE as u64;
        tss.interrupt_stack_table[(DOUBLE_FAULT_IST - 1) as usize] = VirtAddr::new(top);
        tss
    });
    let gdt = GDT.call_once(|| {
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
    });
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded; the TSS is a static that
    // lives forever and is loaded once.
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
