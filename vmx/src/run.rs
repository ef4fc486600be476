//! The exit loop: launch the guest with `go`, read exits from `wait` (a reader thread
//! turns them into [`Event`]s, together with terminal input), have each exit emulated
//! ([`emulate`]), keep #X's posted interrupt in step with the PIC, and launch again.
//! After vmx(1)'s vmx.c runloop. Diagnosis (warnings, trace, status line, the report of
//! an unhandled exit) is in [`diagnose`], the round-trip counts in [`stats`].

mod diagnose;
mod emulate;
mod stats;
mod strio;

use crate::cons::Cmd as ConsCmd;
use crate::dev::{clock::GuestClock, Machine, Seen, Stop};
use crate::exit::{Exit, Io};
use crate::regs::Reg;
use crate::virtio::{self, Mem};
use crate::vmfs::Vmfs;
use diagnose::{Notes, STATUS_EVERY};
use emulate::Cpu;
pub use stats::Stats;
use stats::{Marks, CONS, CONS_EMPTY};
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Something for the loop to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A line read from `wait`.
    Exit(String),
    /// Bytes typed at the terminal.
    Input(Vec<u8>),
    /// The terminal's input ended.
    InputClosed,
    /// Reading `wait` failed: the VM or the connection is gone.
    WaitFailed(String),
    /// Output of the in-kernel UART, read from `cons`.
    Cons(Vec<u8>),
    /// A `cons` read found nothing more while the VM was stopped, after this many
    /// launches: all the output up to that stop has arrived.
    ConsIdle(u64),
    /// Reading `cons` failed.
    ConsFailed(String),
    /// A pipelined ctl write failed (the error says which).
    CtlFailed(String),
    /// A frame for the virtio network device with this index on the bus.
    Frame(usize, Vec<u8>),
    /// A network device's link ended (device index, why).
    LinkDown(usize, String),
    /// Bytes for COM2.
    Com2(Vec<u8>),
    /// A helper thread's message for the log (a `-n` link through the hypervisor's
    /// switch gone down, say).
    Note(String),
}

/// Guest memory for the virtio devices: the segment's `data` through the VM handle.
struct VmMem<'v, V: Vmfs>(&'v mut V);

impl<V: Vmfs> Mem for VmMem<'_, V> {
    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        self.0.read_mem(addr, len)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        self.0.write_mem(addr, data)
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote this status to the done port.
    Done(u8),
    /// The guest reset the machine.
    Reset,
    /// The guest halted with interrupts disabled: nothing can wake it.
    Halted { pc: u64 },
    /// An exit the tool cannot handle: the full report (exit line, instruction bytes at
    /// pc, registers).
    Unhandled(String),
}

/// One guest's run on a VM: the loop's state; the handlers ([`emulate`]), diagnosis
/// ([`diagnose`]) and counts ([`stats`]) work on it from their files.
pub struct Runner<'a, V: Vmfs> {
    pub vm: V,
    /// The devices, the virtio bus among them, and the interrupt pacing.
    pub machine: Machine,
    pub stats: Stats,
    marks: Marks,
    cpu: Cpu,
    running: bool,
    halted: bool,
    /// Monotonic nanoseconds and Unix seconds.
    clock: Box<dyn FnMut() -> (u64, i64) + 'a>,
    out: Box<dyn Write + 'a>,
    log: Box<dyn Write + 'a>,
    /// Print every warning and every unknown port, not just the first of each.
    pub debug: bool,
    /// Every wait line read (`<`) and ctl command written (`>`), with milliseconds.
    pub trace: Option<Box<dyn Write + 'a>>,
    notes: Notes,
    /// Send `go`, `irq` and `exc` without waiting for their replies (see
    /// [`Vmfs::ctl_nowait`]).
    pub pipeline: bool,
    /// Where COM2's output goes (nowhere by default).
    pub com2_out: Option<Box<dyn Write + 'a>>,
    /// With in-kernel devices: tells the `cons` reader that the guest runs again, or
    /// to drain.
    kernel: Option<std::sync::mpsc::Sender<ConsCmd>>,
    /// `go`s so far, and whether the console has been read dry since the last.
    launches: u64,
    cons_idle: bool,
    /// The guest's clock from the exit lines (the hypervisor's `clock` extension), which
    /// the devices then run on; None: they run on the host's.
    pub guest_clock: Option<GuestClock>,
    /// The deadline the hypervisor's `alarm` was last set to.
    alarm: Option<u64>,
    /// The host time of the last clock reading.
    host: u64,
}

impl<'a, V: Vmfs> Runner<'a, V> {
    pub fn new(
        vm: V,
        machine: Machine,
        clock: Box<dyn FnMut() -> (u64, i64) + 'a>,
        out: Box<dyn Write + 'a>,
        log: Box<dyn Write + 'a>,
    ) -> Runner<'a, V> {
        Runner {
            marks: Marks::new(&vm),
            vm,
            machine,
            stats: Stats::default(),
            cpu: Cpu::default(),
            running: false,
            halted: false,
            clock,
            out,
            log,
            debug: false,
            trace: None,
            notes: Notes::default(),
            pipeline: false,
            com2_out: None,
            kernel: None,
            launches: 0,
            cons_idle: false,
            guest_clock: None,
            alarm: None,
            host: 0,
        }
    }

    /// The hypervisor runs the PIC, PIT, COM1 and the rest (its `devices` message took):
    /// COM1 arrives through `cons` (a reader thread sending [`Event::Cons`] and
    /// [`Event::ConsIdle`]), and `go_signal` tells that reader the guest runs again
    /// (and, at the end, to drain). This machine's devices then only drive PIC lines in
    /// the kernel (`line`).
    pub fn kernel_devices(&mut self, go_signal: std::sync::mpsc::Sender<ConsCmd>) {
        self.kernel = Some(go_signal);
    }

    /// Puts the virtio devices on the machine's PCI bus.
    pub fn attach(&mut self, bus: virtio::Bus) {
        self.machine.attach(bus);
    }

    /// The VM handle back, when the run is over.
    pub fn into_vm(self) -> V {
        self.vm
    }

    /// Sets registers for the first `go` (the loader's).
    pub fn preset(&mut self, regs: &[(Reg, u64)]) {
        for (r, v) in regs {
            self.cpu.regs.set(*r, *v);
        }
    }

    fn account(&mut self, reason: &str, events: u64, extra: u64) {
        self.marks
            .account(&mut self.stats, &self.vm, reason, events, extra);
    }

    /// A ctl command whose answer nothing here depends on: pipelined when allowed.
    fn ctl(&mut self, cmd: &str) -> Result<(), String> {
        self.traced('>', cmd);
        let r = if self.pipeline {
            self.vm.ctl_nowait(cmd)
        } else {
            self.vm.ctl(cmd)
        };
        r.map_err(|e| format!("ctl {cmd}: {e}"))
    }

    /// Moves the devices' clock on, to the time of a wait line (`line`) or as far as
    /// the time since allows; gives the host's time.
    fn tick(&mut self, line: Option<&Exit>) -> u64 {
        let (host, wall) = (self.clock)();
        self.host = host;
        let t = match self.guest_clock.as_mut() {
            Some(g) => {
                match line.and_then(|e| Some((e.time?, e.is_notification()))) {
                    Some((t, false)) => g.exit(t),
                    Some((t, true)) => g.seen(t, host),
                    None => {}
                }
                g.target(host)
            }
            None => host,
        };
        self.machine.advance(t, wall);
        host
    }

    /// After an exit: the interrupt pacing (`dev::pace`) learns of acceptances, halts
    /// and EOIs.
    fn pace(&mut self, e: &Exit) {
        let seen = match e.name.as_str() {
            "*ack" => Seen::Ack,
            ".hlt" => Seen::Halt,
            _ => Seen::Other,
        };
        self.machine
            .pace(seen, self.host, self.guest_clock.is_some());
    }

    fn launch(&mut self) -> Result<(), String> {
        if let Some(mut g) = self.guest_clock {
            let ahead = g.catch_up(self.machine.now);
            g.run((self.clock)().0);
            self.guest_clock = Some(g);
            // The guest halted here: its TSC moves on to the devices' time.
            if let Some(d) = ahead {
                self.ctl(&format!("advance {d}"))?;
            }
            self.set_alarm()?;
        }
        let r = self.cpu.regs.take_go();
        let cmd = if r.is_empty() {
            "go".to_string()
        } else {
            format!("go {r}")
        };
        self.ctl(&cmd)?;
        self.running = true;
        if let Some(s) = &self.kernel {
            self.launches += 1;
            self.cons_idle = false;
            let _ = s.send(ConsCmd::Launched);
        }
        Ok(())
    }

    /// On the guest's clock: the guest runs until the devices' next deadline, at the
    /// latest, unless an interrupt hold is on (its end wakes the loop).
    fn set_alarm(&mut self) -> Result<(), String> {
        let due = if self.machine.pace.host_hold().is_some() {
            None
        } else {
            self.machine.deadline()
        };
        if due != self.alarm {
            self.alarm = due;
            self.ctl(&due.map_or("alarm".into(), |d| format!("alarm {d}")))?;
        }
        Ok(())
    }

    fn sync_irq(&mut self) -> Result<(), String> {
        if self.kernel.is_some() {
            for cmd in self.machine.line_commands() {
                self.ctl(&cmd)?;
            }
        } else if let Some(cmd) = self.machine.irq_command() {
            self.ctl(&cmd)?;
        }
        Ok(())
    }

    fn write_out(&mut self, b: &[u8]) {
        let _ = self.out.write_all(b);
        let _ = self.out.flush();
    }

    /// Before a run ends with in-kernel devices: takes the console's output up to the
    /// stop (until a `cons` read after the last launch comes back empty).
    fn drain_cons(&mut self, events: &Receiver<Event>) {
        let Some(s) = &self.kernel else {
            return;
        };
        if !self.cons_idle {
            let _ = s.send(ConsCmd::Drain);
        }
        while !self.cons_idle {
            match events.recv_timeout(Duration::from_secs(60)) {
                Ok(Event::Cons(b)) => {
                    self.write_out(&b);
                    self.account(CONS, 1, 1);
                }
                Ok(Event::ConsIdle(n)) => {
                    self.account(CONS_EMPTY, 1, 1);
                    self.cons_idle = n == self.launches;
                }
                Ok(Event::ConsFailed(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn flush_output(&mut self) {
        let o = self.machine.take_output();
        if !o.is_empty() {
            let _ = self.out.write_all(&o);
            let _ = self.out.flush();
        }
        if let Some(d) = self.machine.fw_debug.as_mut().filter(|d| !d.is_empty()) {
            let _ = self.log.write_all(&std::mem::take(d));
        }
        let o2 = std::mem::take(&mut self.machine.com[1].tx);
        if let (Some(w), false) = (self.com2_out.as_mut(), o2.is_empty()) {
            let _ = w.write_all(&o2);
            let _ = w.flush();
        }
        self.machine_warnings();
    }

    /// Runs the guest until it stops; Err on a 9P failure.
    pub fn run(&mut self, events: &Receiver<Event>) -> Result<Outcome, String> {
        let mut reason = String::from("(start)");
        let mut count = 0;
        let mut wait_read = 0;
        loop {
            let now = self.tick(None);
            if self.machine.pace.expire(now) && self.running {
                self.set_alarm()?;
            }
            self.sync_irq()?;
            self.flush_output();
            if let Some(s) = self.machine.stop {
                self.account(&reason, count, wait_read);
                self.drain_cons(events);
                return Ok(match s {
                    Stop::Done(v) => Outcome::Done(v),
                    Stop::Reset => Outcome::Reset,
                });
            }
            if self.halted && self.machine.irq_posted() {
                self.halted = false;
            }
            if !self.running && !self.halted {
                self.launch()?;
            }
            self.account(&reason, count, wait_read);
            self.status(now);
            // Host ns until the devices' next deadline may be due.
            let due = self
                .machine
                .deadline()
                .and_then(|d| match &self.guest_clock {
                    Some(g) => g.wait(now, d),
                    None => Some(d.saturating_sub(now)),
                });
            let due = match (due, self.machine.pace.host_hold()) {
                (d, None) => d,
                (None, Some(h)) => Some(h.saturating_sub(now)),
                (Some(d), Some(h)) => Some(d.min(h.saturating_sub(now))),
            };
            let due = match (due, self.debug) {
                (Some(d), true) => Some(d.min(STATUS_EVERY)),
                (None, true) => Some(STATUS_EVERY),
                (d, false) => d,
            };
            let ev = match due {
                Some(d) => events.recv_timeout(Duration::from_nanos(d)),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            (count, wait_read) = (1, 0);
            match ev {
                Ok(Event::Exit(line)) => {
                    wait_read = 1;
                    let e = Exit::parse(&line)?;
                    reason = e.name.clone();
                    if e.name == "io" && self.machine.virtio_port(Io::decode(e.qual).port) {
                        reason = "io/virtio".into();
                    }
                    self.noted(&line);
                    self.tick(Some(&e));
                    self.traced('<', &line);
                    if let Some(o) = self.handle(&e)? {
                        self.flush_output();
                        self.account(&reason, count, wait_read);
                        self.drain_cons(events);
                        return Ok(o);
                    }
                    self.pace(&e);
                }
                Ok(Event::Input(b)) => {
                    reason = "(input)".into();
                    if self.kernel.is_some() {
                        self.vm.write_cons(&b)?;
                    } else {
                        self.machine.type_in(&b);
                    }
                }
                Ok(Event::Cons(b)) => {
                    reason = CONS.into();
                    wait_read = 1;
                    self.write_out(&b);
                }
                Ok(Event::ConsIdle(n)) => {
                    reason = CONS_EMPTY.into();
                    wait_read = 1;
                    self.cons_idle = n == self.launches;
                }
                Ok(Event::ConsFailed(e)) => return Err(format!("reading cons: {e}")),
                Ok(Event::InputClosed) => {
                    reason = "(input)".into();
                }
                Ok(Event::WaitFailed(e)) => return Err(format!("reading wait: {e}")),
                Ok(Event::CtlFailed(e)) => return Err(e),
                Ok(Event::Frame(i, f)) => {
                    reason = "(net)".into();
                    if let Some(virtio::Kind::Net(n)) =
                        self.machine.virtio.devs.get_mut(i).map(|d| &mut d.kind)
                    {
                        n.receive(f);
                    }
                    self.machine.virtio_notify(
                        i,
                        virtio::net::Net::RX_QUEUE,
                        &mut VmMem(&mut self.vm),
                    );
                }
                Ok(Event::LinkDown(i, why)) => {
                    reason = "(net)".into();
                    self.warn(format!("virtio network device {i}: link down: {why}"));
                }
                Ok(Event::Com2(b)) => {
                    reason = "(input)".into();
                    self.machine.type_in_com(1, &b);
                }
                Ok(Event::Note(m)) => {
                    reason = "(net)".into();
                    self.warn(m);
                }
                Err(RecvTimeoutError::Timeout) => reason = "(timer)".into(),
                Err(RecvTimeoutError::Disconnected) => return Err("the wait reader ended".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
