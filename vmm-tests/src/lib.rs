//! Integration tests that boot the kernel in emulators and drive it over 9P.
pub mod bench;
pub mod emu;
pub mod firmware;
pub mod guests;
pub mod linux;
pub mod status;
