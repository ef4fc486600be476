//! `selftest=vmx` on this CPU: devvmx's self-test (`devvmx::selftest`, generic over `Hw`)
//! on a [`KernelHw`], logging through the kernel's logger and timing with the PIT.

use super::KernelHw;
use devvmx::selftest::{Env, Level};

struct Kernel;

impl Env for Kernel {
    fn interrupts_enabled(&self) -> bool {
        super::insn::interrupts_enabled()
    }

    fn ticks(&self) -> u64 {
        crate::arch::timer::ticks()
    }

    fn log(&mut self, level: Level, line: core::fmt::Arguments) {
        match level {
            Level::Info => log::info!("{}", line),
            Level::Error => log::error!("{}", line),
        }
    }
}

/// Runs the self-test, logging each step; true when the guest exited as expected.
pub fn run() -> bool {
    devvmx::selftest::run(&mut KernelHw::new(), &mut Kernel)
}
