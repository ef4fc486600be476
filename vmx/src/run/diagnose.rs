//! Diagnosis: warnings (each once, unless -D), the -D status line, the trace of wait
//! lines and ctl commands, and the report for an exit that ends the run.

use super::Runner;
use crate::exit::Exit;
use crate::paging::{self, Mode};
use crate::regs::{Reg, Regs};
use crate::vmfs::Vmfs;
use std::collections::HashSet;
use std::io::Write;

/// How often -D prints a status line while the guest runs.
pub(super) const STATUS_EVERY: u64 = 10_000_000_000;

/// What the log has been told, and what the status line tells.
#[derive(Clone, Debug, Default)]
pub(super) struct Notes {
    warned: HashSet<String>,
    /// Exits so far and the last one.
    exits: u64,
    last: String,
    /// When the last status line was printed (host ns).
    last_status: u64,
}

impl<V: Vmfs> Runner<'_, V> {
    pub(super) fn warn(&mut self, msg: String) {
        if self.debug || self.notes.warned.insert(msg.clone()) {
            let _ = writeln!(self.log, "vmx: {msg}");
        }
    }

    /// Passes on the warnings the machine gathered.
    pub(super) fn machine_warnings(&mut self) {
        for w in std::mem::take(&mut self.machine.warnings) {
            self.warn(w);
        }
        if !self.machine.unknown.is_empty() {
            let ports: Vec<(u16, u64)> = std::mem::take(&mut self.machine.unknown)
                .into_iter()
                .collect();
            for (p, _) in ports {
                self.warn(format!("access to unknown i/o port {p:#x} ignored"));
            }
        }
    }

    /// A wait line (`<`) or ctl command (`>`) for the trace, with milliseconds.
    pub(super) fn traced(&mut self, dir: char, what: &str) {
        if let Some(t) = self.trace.as_mut() {
            let _ = writeln!(t, "{:.3} {dir} {what}", self.machine.now as f64 / 1e6);
        }
    }

    /// Counts an exit for the status line.
    pub(super) fn noted(&mut self, line: &str) {
        self.notes.exits += 1;
        self.notes.last = line.to_string();
    }

    /// With -D, a status line every [`STATUS_EVERY`] (`now`: host ns).
    pub(super) fn status(&mut self, now: u64) {
        if !self.debug || now.saturating_sub(self.notes.last_status) < STATUS_EVERY {
            return;
        }
        self.notes.last_status = now;
        let devices = if self.kernel.is_some() {
            "PIC, PIT and COM1 in the hypervisor".to_string()
        } else {
            format!(
                "irq posted {:?}, PIC wants {:?}, timer due in {:?} ms",
                self.machine.posted(),
                self.machine.pic.pending(),
                self.machine
                    .deadline()
                    .map(|d| d.saturating_sub(self.machine.now) / 1_000_000)
            )
        };
        let msg = format!(
            "vmx: status at {}s: {} exits, the last `{}`; {devices}",
            now / 1_000_000_000,
            self.notes.exits,
            self.notes.last,
        );
        let _ = writeln!(self.log, "{msg}");
    }

    /// The report for an exit that ends the run: why, the exit line, the bytes at pc and
    /// the registers, read fresh from the hypervisor.
    pub fn diagnose(&mut self, e: &Exit, why: &str) -> String {
        let mut s = format!("vmx: unhandled exit: {why}\n  exit line: {}\n", e.raw);
        let text = match self.vm.read_regs() {
            Ok(t) => t,
            Err(x) => {
                s.push_str(&format!("  (registers unreadable: {x})\n"));
                return s;
            }
        };
        let mut r = Regs::new();
        let _ = r.load(&text);
        let g = |n: Reg| r.known(n).unwrap_or(0);
        let pc = e.pc.unwrap_or(g(Reg::Pc));
        let mode = Mode {
            cr0: g(Reg::Cr0Real),
            cr3: g(Reg::Cr3),
            cr4: g(Reg::Cr4Real),
            efer: g(Reg::Efer),
        };
        let lin = if mode.efer & (1 << 10) != 0 {
            pc
        } else {
            g(Reg::CsBase).wrapping_add(pc) & 0xffff_ffff
        };
        let vm = &mut self.vm;
        let mut read = |a: u64, n: usize| -> Option<u64> {
            let b = vm.read_mem(a, n).ok()?;
            Some(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
        };
        match paging::translate(lin, mode, &mut read) {
            Some(pa) => match self.vm.read_mem(pa, 16) {
                Ok(b) => {
                    let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
                    s.push_str(&format!(
                        "  instruction bytes at pc {pc:#x} (physical {pa:#x}): {}\n",
                        hex.join(" ")
                    ));
                }
                Err(x) => s.push_str(&format!(
                    "  instruction bytes at pc {pc:#x} (physical {pa:#x}) unreadable: {x}\n"
                )),
            },
            None => s.push_str(&format!(
                "  pc {pc:#x} (linear {lin:#x}) is not mapped by the guest's page tables\n"
            )),
        }
        s.push_str("  registers:\n");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for row in lines.chunks(4) {
            let cells: Vec<String> = row
                .iter()
                .map(|l| {
                    let mut f = l.split_whitespace();
                    format!(
                        "{:>10} {:<20}",
                        f.next().unwrap_or(""),
                        f.next().unwrap_or("")
                    )
                })
                .collect();
            s.push_str(&format!("  {}\n", cells.join(" ").trim_end()));
        }
        s
    }
}
