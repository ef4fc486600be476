//! The `log` crate's backend: lines on port 0xE9, stamped with timer ticks, and on the
//! screen console where there is one. No lock on port 0xE9 (the console only tries its
//! own), so an exception inside a log call can still log.

use crate::arch::{debugcon, timer};
use core::fmt::Write;

struct E9;

struct Screen;

impl Write for Screen {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        crate::console::write(s);
        Ok(())
    }
}

impl Write for E9 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        debugcon::write(s.as_bytes());
        Ok(())
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let t = timer::ticks();
            let _ = writeln!(
                E9,
                "[{:5}.{:02}] {:5} {}",
                t / timer::HZ as u64,
                t % timer::HZ as u64,
                r.level(),
                r.args()
            );
            let _ = writeln!(Screen, "{:5} {}", r.level(), r.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
