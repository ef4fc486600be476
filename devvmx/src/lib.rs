//! The Plan 9 `#X` vmx device and segment(3)-style segments, above a [`hw::Hw`] trait.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod hw;
