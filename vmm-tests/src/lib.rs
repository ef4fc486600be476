//! The test harness: boots the kernel in emulators and drives it over 9P ([`emu`]), the
//! test guests ([`guests`]), Linux as a 9P client ([`linux`]), what tests and benchmarks
//! set up around the machine ([`fixtures`]), firmware and machine types beyond the
//! default PC ([`firmware`]), segments over 9P ([`segment`]), and what the benchmarks share
//! ([`bench`]).
pub mod bench;
pub mod emu;
pub mod firmware;
pub mod fixtures;
pub mod guests;
pub mod linux;
pub mod segment;
pub mod status;
