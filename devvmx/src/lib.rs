//! The Plan 9 `#X` vmx device and segment(3)-style segments, above a [`hw::Hw`] trait.
//!
//! [`Namespace`] is the served tree (a `ninep::Tree`): `vmx/` as 9front's devvmx.c serves
//! it (the seed, /work/shared/seed/devvmx.c), `segment/` after devsegment.c, and a root
//! `status` file. Everything here is safe, architecture-independent Rust; the kernel
//! implements [`hw::Hw`] and `testhw::TestHw` (feature `testhw`) implements it on the host.
//! DEVIATIONS.md lists where and why this differs from the seed.
//!
//! The interface others use: [`Namespace`] and [`Config`] (the server) with the host's
//! [`Facts`] ([`status`], handed over whole), [`table`] (the VM table: slots and
//! generations, VPIDs, which CPU runs each VM and each CPU's run list in [`place`], the boot
//! CPU's VMXON while it runs a VM), [`vtx`] (VT-x on one CPU: the seed's vmxreset checks,
//! vmxstart's CR checks and VMXON, which the kernel's other CPUs use at start-up), [`caps`]
//! (what the CPU's VT-x can do, read from its capability MSRs once, and what it must), [`hw`]
//! (the machine trait and its frames), [`vmcs`] (VT-x names), [`selftest`] (`selftest=vmx`
//! at boot), [`clock`] (the CMOS date), [`owner`] (who may be the owner on a network link),
//! [`throttle`] (what a wrong secret costs) and [`plan9`] (error strings a server or test names; those every 9P server gives are
//! `ninep::error`'s, re-exported there), [`kdev`] (the in-kernel devices' limits) and
//! [`event`] (the `exc`/`irq` syntax, fuzzed).
//!
//! Inside, one job a module: `ns` maps each file to a call (`ns/files.rs`: names, qids,
//! stats; `ns/vmfile.rs`: a VM's files and its ctl messages); `vm` is one VM (its ctl
//! commands and reports), with `vm::init` (vmcsinit and the MSR areas), `vm::entry` (one
//! VM entry: injection, wake-ups, the exit) and `vm::step` (single-stepping by RFLAGS.TF
//! where the CPU has no monitor trap flag); `kdev` holds the in-kernel devices and their
//! answers to exits; `guestmem` a VM's memory as those devices reach it (on its
//! CPU, through its map's shared segment frames); `regs` the `regs` file's table; `mem` the `map` file over `ept`'s
//! tables; `segment` the global segments.
//!
//! Where names live: every VT-x name is in [`vmcs`], the one table the kernel's
//! architecture layer uses too: VMCS field encodings as [`vmcs::VmcsField`], grouped by
//! [`vmcs::Width`] (which the encoding carries), MSR numbers and their names as
//! [`vmcs::Msr`], control bits, exit reasons ([`vmcs::ExitReason`]), interruption
//! information ([`vmcs::IntrInfo`]) and the guest-state bits the device tests. Host memory
//! is [`hw::Frame`]s, which only an allocator makes; the EPT keeps its tables' frames.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod caps;
pub mod clock;
mod ept;
pub mod event;
mod guestmem;
pub mod hw;
pub mod kdev;
mod mem;
mod ns;
pub mod owner;
pub mod place;
pub mod plan9;
mod regs;
mod segment;
pub mod selftest;
pub mod status;
pub mod table;
#[cfg(any(test, feature = "testhw"))]
pub mod testhw;
pub mod throttle;
mod vm;
pub mod vmcs;
pub mod vtx;

pub use ns::{Config, HostSwitch, Namespace, Node, SharedSwitch, EQUIT};
pub use status::Facts;
