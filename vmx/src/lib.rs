//! vmx: runs guests on the hypervisor's #X device over 9P, as 9front's vmx(1) runs them
//! on a local #X: guest loaders, device models, the exit loop.

#![forbid(unsafe_code)]

pub mod cons;
pub mod cpio;
pub mod cpu;
pub mod demo;
pub mod dev;
pub mod exit;
pub mod firmware;
pub mod kdisk;
pub mod knet;
pub mod layout;
pub mod loader;
pub mod paging;
pub mod pipe;
pub mod regs;
pub mod run;
pub mod session;
pub mod upload;
pub mod virtio;
pub mod vmfs;
