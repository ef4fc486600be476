//! The architecture layer: everything that needs `unsafe` (privileged instructions, the
//! boot stub, raw physical memory, port I/O) lives here, behind safe functions. The
//! crate denies `unsafe_code`; only the files below that need it allow it, each at its top.

pub mod ap;
pub mod boot;
pub mod cpu;
pub mod debugcon;
pub mod fb;
pub mod frame_source;
pub mod gdt;
pub mod idt;
pub mod lapic;
pub mod paging;
pub mod pci;
pub mod phys;
pub mod pic;
pub mod pit;
mod pmtimer;
mod port;
pub mod rtc;
pub mod timer;
pub mod trap;
mod tsc;
pub mod uart;
pub mod vga;
pub mod vmx;
pub mod xcall;

pub use pmtimer::PmTimer;

/// CPUs beyond this many are left in wait-for-SIPI (and logged).
pub const MAX_CPUS: usize = 16;

/// Descriptor tables and the PIC (the tick starts later: `timer::init`, once the ACPI
/// tables are known). Interrupts stay off until the caller enables them.
pub fn init() {
    gdt::init();
    idt::init();
    pic::init();
}
