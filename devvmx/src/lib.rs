//! The Plan 9 `#X` vmx device and segment(3)-style segments, above a [`hw::Hw`] trait.
//!
//! [`Namespace`] is the served tree (a `ninep::Tree`): `vmx/` as 9front's devvmx.c serves
//! it (the seed, /work/shared/seed/devvmx.c), `segment/` after devsegment.c, and a root
//! `status` file. Everything here is safe, architecture-independent Rust; the kernel
//! implements [`hw::Hw`] and `testhw::TestHw` (feature `testhw`) implements it on the host.
//! DEVIATIONS.md lists where and why this differs from the seed.
//!
//! The layers, top down: `ns` maps each file to a call (`ns/files.rs`: names, qids,
//! stats; `ns/vmfile.rs`: a VM's files and its ctl messages); [`status`] is the root
//! status file and the host's [`Facts`] it shows, handed over whole by the host;
//! [`table`] is the VM table (slots and generations, VPIDs, which CPU runs each VM and
//! each CPU's run list in [`place`], the boot CPU's VMXON while it runs a VM; vmxnew,
//! cmdquit and every command on a VM's own CPU); [`vm`] is one VM; [`vtx`] is VT-x on one
//! CPU (the seed's vmxreset checks, vmxstart's CR checks and VMXON), which the kernel's
//! other CPUs use directly at start-up; [`segment`] the segments; [`owner`] who may be
//! the owner on a network link. Error strings are Plan 9's, from [`plan9`] (those every
//! 9P server gives are `ninep::error`'s, re-exported there).
//!
//! Where names live: every VT-x name (VMCS field encodings as [`vmcs::VmcsField`], MSR
//! numbers as [`vmcs::Msr`], control bits, exit reasons) is in [`vmcs`], the one table the
//! kernel's architecture layer uses too. Host memory is [`hw::Frame`]s, which only an
//! allocator makes; the EPT keeps its tables' frames ([`ept::Ept`]). The VMX self-test the
//! kernel runs at boot (`selftest=vmx`) is [`selftest`], generic over [`hw::Hw`].
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod clock;
pub mod ept;
pub mod event;
pub mod hw;
pub mod kdev;
pub mod mem;
mod ns;
pub mod owner;
pub mod place;
pub mod plan9;
pub mod regs;
pub mod segment;
pub mod selftest;
pub mod status;
pub mod table;
#[cfg(any(test, feature = "testhw"))]
pub mod testhw;
pub mod throttle;
pub mod vm;
pub mod vmcs;
pub mod vtx;

pub use ns::{Config, Namespace, Node, EQUIT};
pub use status::Facts;
