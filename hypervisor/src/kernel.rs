//! The kernel image: the library (lib.rs) holds all of it, entry point (`arch::boot`),
//! panic handler and heap included; this bin only links it for `x86_64-unknown-none`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
use hypervisor as _;

/// On the host the library is what is built and tested; there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the kernel runs only on x86_64-unknown-none (hypervisor/README.md)");
    std::process::exit(1);
}
