//! The machine below the #X device: the thin, `unsafe` architecture layer implements this
//! trait in the kernel (hypervisor/src/arch/), and a test double implements it on the host.
//!
//! Everything above it (vmxstart, vmcsinit, the run loop's entry decisions, EPT tables,
//! segments) is safe Rust in this crate. Each method is one privileged operation; none of
//! them decides anything.
//!
//! Host memory comes in [`Frame`]s: 4 KiB host frames that only an allocator makes
//! ([`Hw::alloc_frame`]; in the kernel, the holder of the one [`FrameMint`]) and
//! [`Hw::free_frame`] consumes. The kernel maps all physical memory, so a frame's bytes
//! are reachable through [`Hw::frame`], which takes a frame, never an address.

pub use crate::vmcs::{Msr, VmcsField};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

/// A host physical address.
pub type Phys = u64;

/// Size of a host frame and of a guest page.
pub const PAGE: usize = 4096;

/// A 4 KiB host frame from [`Hw::alloc_frame`], held by its one owner until
/// [`Hw::free_frame`] takes it back. Not `Clone`: a frame has one owner, and [`Hw::frame`]
/// (its bytes) and the VMX instructions that take a region ([`Hw::vmxon`], [`Hw::vmclear`],
/// [`Hw::vmptrld`]) take a `&Frame`, so none of them can be handed an arbitrary address
/// (the Hubris `USlice` idea). Nothing outside this crate turns a `u64` into a `Frame`
/// except the holder of the one [`FrameMint`], the kernel's frame allocator.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a frame not given back with Hw::free_frame leaks"]
pub struct Frame {
    pa: Phys,
}

impl Frame {
    /// Within this crate: the test double's allocator.
    #[cfg(any(test, feature = "testhw"))]
    pub(crate) fn new(pa: Phys) -> Frame {
        Frame { pa }
    }

    /// Its physical address (for EPT entries, VMCS pointers and the like).
    pub fn pa(&self) -> Phys {
        self.pa
    }
}

/// The right to make [`Frame`]s from addresses: one per program. The first
/// [`FrameMint::take`] gets it (the kernel's frame allocator, at boot) and every later one
/// gets `None`, so no other code can forge a frame.
#[derive(Debug)]
pub struct FrameMint(());

static MINTED: AtomicBool = AtomicBool::new(false);

impl FrameMint {
    /// The mint, the first time it is asked for.
    pub fn take() -> Option<FrameMint> {
        (!MINTED.swap(true, Ordering::SeqCst)).then_some(FrameMint(()))
    }

    /// A frame the allocator has just handed out at `pa`.
    pub fn frame(&self, pa: Phys) -> Frame {
        Frame { pa }
    }

    /// A frame given back to the allocator: its address, for the allocator's own books.
    pub fn reclaim(&self, f: Frame) -> Phys {
        f.pa
    }
}

/// `n` frames, or `None` with every frame taken given back when memory runs out.
pub fn alloc_frames<H: Hw>(hw: &mut H, n: usize) -> Option<Vec<Frame>> {
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        match hw.alloc_frame() {
            Some(f) => frames.push(f),
            None => {
                for f in frames {
                    hw.free_frame(f);
                }
                return None;
            }
        }
    }
    Some(frames)
}

/// [`alloc_frames`] as an array.
pub fn alloc_array<H: Hw, const N: usize>(hw: &mut H) -> Option<[Frame; N]> {
    alloc_frames(hw, N)?.try_into().ok()
}

/// Guest general registers that the VMCS does not hold (rsp and rip live in the VMCS).
/// The order is the one the entry trampoline saves and restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GuestRegs {
    pub ax: u64,
    pub bx: u64,
    pub cx: u64,
    pub dx: u64,
    pub bp: u64,
    pub si: u64,
    pub di: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// The FXSAVE area: what `fpregs` reads and writes, byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct FxArea(pub [u8; 512]);

impl Default for FxArea {
    fn default() -> Self {
        FxArea([0; 512])
    }
}

/// Guest state switched around a VM entry by the architecture layer, beside the VMCS.
#[derive(Clone, Debug, Default)]
pub struct EntryState {
    pub regs: GuestRegs,
    pub fx: FxArea,
    /// Guest XCR0, loaded with XSETBV before entry when it differs from the host's.
    pub xcr0: u64,
    /// Guest CR2: the CPU does not switch it.
    pub cr2: u64,
    /// Guest DR0-DR3 and DR6 (DR7 is in the VMCS); loaded when DR7 enables any.
    pub dr: [u64; 8],
}

/// A VMX instruction failed (VMfailValid or VMfailInvalid); the VM-instruction error
/// field says why when the VMCS is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxFail;

/// One privileged operation each.
pub trait Hw {
    // --- memory ---
    /// A zeroed 4 KiB frame, or `None` when memory is exhausted.
    fn alloc_frame(&mut self) -> Option<Frame>;
    /// Gives a frame back.
    fn free_frame(&mut self, f: Frame);
    /// A frame's bytes.
    fn frame(&mut self, f: &Frame) -> &mut [u8; PAGE];
    /// Frames free and in all, for the status file.
    fn frames_free(&self) -> usize;
    fn frames_total(&self) -> usize;

    // --- time ---
    /// Wall-clock seconds since 1970-01-01 00:00:00 (UTC as far as the RTC knows: the
    /// kernel reads the RTC at boot and adds its timer's ticks since), for file times.
    /// Not for measuring intervals: it moves in whole seconds.
    fn now(&self) -> u32;

    // --- CPU identification and host state ---
    /// CPUID leaf/subleaf: eax, ebx, ecx, edx.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// RDMSR; `None` where the MSR does not exist (#GP).
    fn rdmsr(&mut self, msr: Msr) -> Option<u64>;
    /// WRMSR; `false` where it faults.
    fn wrmsr(&mut self, msr: Msr, value: u64) -> bool;
    fn cr0(&self) -> u64;
    fn cr4(&self) -> u64;
    /// Sets CR0 and CR4 (VMXON wants CR4.VMXE and CR0.NE).
    fn set_cr0(&mut self, v: u64);
    fn set_cr4(&mut self, v: u64);
    /// The host's XCR0 (1 where the CPU has no XSAVE).
    fn host_xcr0(&self) -> u64;
    /// The time-stamp counter.
    fn rdtsc(&mut self) -> u64;
    /// The time-stamp counter's rate in Hz (the kernel calibrates it against the PIT at
    /// boot): the clock of in-kernel devices, which run on the guest's (offset) TSC.
    fn tsc_hz(&self) -> u64;

    // --- VMX instructions ---
    fn vmxon(&mut self, region: &Frame) -> Result<(), VmxFail>;
    fn vmxoff(&mut self);
    fn vmclear(&mut self, vmcs: &Frame) -> Result<(), VmxFail>;
    /// Makes `vmcs` current; the layer may skip the instruction when it already is.
    fn vmptrld(&mut self, vmcs: &Frame) -> Result<(), VmxFail>;
    fn vmread(&mut self, field: VmcsField) -> Result<u64, VmxFail>;
    fn vmwrite(&mut self, field: VmcsField, value: u64) -> Result<(), VmxFail>;
    /// INVEPT single-context (type 1) of `eptp`.
    fn invept(&mut self, eptp: u64) -> Result<(), VmxFail>;
    /// INVVPID single-context (type 1) of `vpid`.
    fn invvpid(&mut self, vpid: u16) -> Result<(), VmxFail>;
    /// Writes the HOST_* fields of the current VMCS (selectors, CR0/3/4, bases, GDTR,
    /// IDTR, PAT, EFER, RSP/RIP of the exit path) from the running kernel.
    fn write_host_state(&mut self) -> Result<(), VmxFail>;
    /// Enters the guest of the current VMCS (VMLAUNCH unless `launched`, else VMRESUME)
    /// with interrupts off, switching FPU, XCR0, CR2 and debug registers as the seed's
    /// vmxproc does; returns after the VM exit with the guest state saved back.
    /// `Err` when the entry instruction itself failed (no exit happened).
    fn enter(&mut self, launched: bool, state: &mut EntryState) -> Result<(), VmxFail>;

    // --- CPUs ---
    /// Runs `f` on CPU `cpu` with that CPU's layer (at once when it is this CPU) and
    /// returns once `f` has returned. Another CPU takes it between two guest entries
    /// (the preemption timer bounds each) or when its wake-up IPI brings it out of hlt.
    fn on_cpu(&mut self, cpu: usize, f: &mut dyn FnMut(&mut Self));
}
