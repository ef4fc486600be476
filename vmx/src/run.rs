//! The exit loop: launch the guest with `go`, read exits from `wait` (a reader thread
//! turns them into [`Event`]s, together with terminal input), emulate what each exit
//! asks for, keep #X's posted interrupt in step with the PIC, and launch again. After
//! vmx(1)'s exith.c and vmx.c runloop.

use crate::cpu::{self, Msr};
use crate::dev::{clock::GuestClock, Machine, Seen, Stop};
use crate::exit::{Exit, Io};
use crate::paging::{self, Mode};
use crate::regs::{Reg, Regs};
use crate::virtio::{self, Mem};
use crate::vmfs::Vmfs;
use std::collections::{BTreeMap, HashMap, HashSet};
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

/// 9P round trips and exits, by exit reason.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Reason -> (events, round trips, latency-bound round trips). Round trips count the
    /// `wait` read that brought the exit and every request made while handling it, up to
    /// and including the `go`; latency-bound ones are those the loop waited for (the
    /// wait read and every request but pipelined ctl writes, which travel with it).
    pub by_reason: BTreeMap<String, (u64, u64, u64)>,
    /// Wall time of the run.
    pub elapsed: std::time::Duration,
    /// Bytes the virtio disks moved between image and guest.
    pub disk_bytes: u64,
}

impl Stats {
    pub fn total(&self) -> (u64, u64, u64) {
        self.by_reason
            .values()
            .fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2))
    }

    /// A table for --stats.
    pub fn report(&self) -> String {
        let mut s = format!(
            "{:<14} {:>10} {:>12} {:>9} {:>14} {:>9}\n",
            "exit", "count", "round trips", "per exit", "latency-bound", "per exit"
        );
        let per = |t: u64, n: u64| if n == 0 { 0.0 } else { t as f64 / n as f64 };
        let mut rows: Vec<_> = self.by_reason.iter().collect();
        rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        for (name, (n, t, l)) in rows {
            s.push_str(&format!(
                "{name:<14} {n:>10} {t:>12} {:>9.2} {l:>14} {:>9.2}\n",
                per(*t, *n),
                per(*l, *n)
            ));
        }
        let (n, t, l) = self.total();
        s.push_str(&format!(
            "{:<14} {n:>10} {t:>12} {:>9} {l:>14}\n",
            "total", ""
        ));
        if self.disk_bytes > 0 {
            let mb = self.disk_bytes as f64 / (1 << 20) as f64;
            let trips = self.by_reason.get("io/virtio").map_or(0, |r| r.1);
            s.push_str(&format!(
                "virtio-blk: {mb:.2} MiB moved, {:.0} round trips per MiB (io/virtio exits, queue and buffer transfers)\n",
                trips as f64 / mb
            ));
        }
        if !self.elapsed.is_zero() {
            s.push_str(&format!(
                "wall time {:.2} s, {:.2} ms per latency-bound round trip\n",
                self.elapsed.as_secs_f64(),
                self.elapsed.as_secs_f64() * 1e3 / l.max(1) as f64
            ));
        }
        s
    }
}

pub struct Runner<'a, V: Vmfs> {
    pub vm: V,
    pub machine: Machine,
    pub stats: Stats,
    regs: Regs,
    running: bool,
    halted: bool,
    kept: HashMap<u32, u64>,
    /// Monotonic nanoseconds and Unix seconds.
    clock: Box<dyn FnMut() -> (u64, i64) + 'a>,
    out: Box<dyn Write + 'a>,
    log: Box<dyn Write + 'a>,
    /// Print every warning and every unknown port, not just the first of each.
    pub debug: bool,
    /// Every wait line read (`<`) and ctl command written (`>`), with milliseconds.
    pub trace: Option<Box<dyn Write + 'a>>,
    warned: HashSet<String>,
    mark: u64,
    /// Blocking round trips at `mark`.
    mark_blocking: u64,
    /// Send `go`, `irq` and `exc` without waiting for their replies (see
    /// [`Vmfs::ctl_nowait`]).
    pub pipeline: bool,
    /// Where COM2's output goes (nowhere by default).
    pub com2_out: Option<Box<dyn Write + 'a>>,
    /// With in-kernel devices: tells the `cons` reader that the guest runs again.
    kernel: Option<std::sync::mpsc::Sender<()>>,
    /// `go`s so far, and whether the console has been read dry since the last.
    launches: u64,
    cons_idle: bool,
    /// Exits so far and the last one, for the status line.
    exits: u64,
    last: String,
    last_status: u64,
    /// The guest's clock from the exit lines (the hypervisor's `clock` extension), which
    /// the devices then run on; None: they run on the host's.
    pub guest_clock: Option<GuestClock>,
    /// The deadline the hypervisor's `alarm` was last set to.
    alarm: Option<u64>,
    /// The host time of the last clock reading.
    host: u64,
}

/// RFLAGS.IF.
const FLAGS_IF: u64 = 1 << 9;

/// Where an MSR lives: pcdev's [`Msr`] with its register as a [`Reg`].
enum Place {
    Reg(Reg),
    Kept(u64),
    Zero,
}

/// How often -D prints a status line while the guest runs.
const STATUS_EVERY: u64 = 10_000_000_000;

impl<'a, V: Vmfs> Runner<'a, V> {
    pub fn new(
        vm: V,
        machine: Machine,
        clock: Box<dyn FnMut() -> (u64, i64) + 'a>,
        out: Box<dyn Write + 'a>,
        log: Box<dyn Write + 'a>,
    ) -> Runner<'a, V> {
        let mark = vm.round_trips();
        let mark_blocking = vm.blocking_trips();
        Runner {
            vm,
            machine,
            stats: Stats::default(),
            regs: Regs::new(),
            running: false,
            halted: false,
            kept: HashMap::new(),
            clock,
            out,
            log,
            debug: false,
            trace: None,
            warned: HashSet::new(),
            mark,
            mark_blocking,
            pipeline: false,
            com2_out: None,
            kernel: None,
            launches: 0,
            cons_idle: false,
            exits: 0,
            last: String::new(),
            last_status: 0,
            guest_clock: None,
            alarm: None,
            host: 0,
        }
    }

    /// The hypervisor runs the PIC, PIT, COM1 and the rest (its `devices` message took):
    /// COM1 arrives through `cons` (a reader thread sending [`Event::Cons`] and
    /// [`Event::ConsIdle`]), and `go_signal` tells that reader the guest runs again.
    /// This machine's devices then only drive PIC lines in the kernel (`line`).
    pub fn kernel_devices(&mut self, go_signal: std::sync::mpsc::Sender<()>) {
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
            self.regs.set(*r, *v);
        }
    }

    fn warn(&mut self, msg: String) {
        if self.debug || self.warned.insert(msg.clone()) {
            let _ = writeln!(self.log, "vmx: {msg}");
        }
    }

    fn account(&mut self, reason: &str, events: u64, extra: u64) {
        let now = self.vm.round_trips();
        let blocking = self.vm.blocking_trips();
        let e = self.stats.by_reason.entry(reason.to_string()).or_default();
        e.0 += events;
        e.1 += now - self.mark + extra;
        e.2 += blocking - self.mark_blocking + extra;
        self.mark = now;
        self.mark_blocking = blocking;
    }

    fn get(&mut self, r: Reg) -> Result<u64, String> {
        if let Some(v) = self.regs.known(r) {
            return Ok(v);
        }
        let text = self
            .vm
            .read_regs()
            .map_err(|e| format!("reading regs: {e}"))?;
        self.regs.load(&text)?;
        self.regs
            .known(r)
            .ok_or_else(|| format!("the hypervisor has no register {:?}", r.name()))
    }

    fn skip(&mut self, e: &Exit) -> Result<(), String> {
        let pc = self.get(Reg::Pc)?;
        self.regs.set(Reg::Pc, pc.wrapping_add(e.ilen));
        Ok(())
    }

    fn traced(&mut self, dir: char, what: &str) {
        if let Some(t) = self.trace.as_mut() {
            let _ = writeln!(t, "{:.3} {dir} {what}", self.machine.now as f64 / 1e6);
        }
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

    fn exc(&mut self, what: &str) -> Result<(), String> {
        self.ctl(&format!("exc {what}"))
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
        let r = self.regs.take_go();
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
            let _ = s.send(());
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
        if self.kernel.is_none() {
            return;
        }
        while !self.cons_idle {
            match events.recv_timeout(Duration::from_secs(60)) {
                Ok(Event::Cons(b)) => {
                    self.write_out(&b);
                    self.account("(cons)", 1, 1);
                }
                Ok(Event::ConsIdle(n)) => {
                    self.account("(cons)", 1, 1);
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
        let o2 = std::mem::take(&mut self.machine.com[1].tx);
        if let (Some(w), false) = (self.com2_out.as_mut(), o2.is_empty()) {
            let _ = w.write_all(&o2);
            let _ = w.flush();
        }
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
            if self.debug && now.saturating_sub(self.last_status) >= STATUS_EVERY {
                self.last_status = now;
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
                    self.exits,
                    self.last,
                );
                let _ = writeln!(self.log, "{msg}");
            }
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
                    self.exits += 1;
                    self.last = line.clone();
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
                    reason = "(cons)".into();
                    wait_read = 1;
                    self.write_out(&b);
                }
                Ok(Event::ConsIdle(n)) => {
                    reason = "(cons)".into();
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
                Err(RecvTimeoutError::Timeout) => reason = "(timer)".into(),
                Err(RecvTimeoutError::Disconnected) => return Err("the wait reader ended".into()),
            }
        }
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

    /// Handles one exit; Some when the run must end.
    fn handle(&mut self, e: &Exit) -> Result<Option<Outcome>, String> {
        if !e.is_notification() {
            self.running = false;
            for (r, v) in [(Reg::Pc, e.pc), (Reg::Sp, e.sp), (Reg::Ax, e.ax)] {
                if let Some(v) = v {
                    self.regs.poke(r, v);
                }
            }
        }
        match e.name.as_str() {
            "io" => return self.io(e),
            ".cpuid" => self.cpuid(e)?,
            ".hlt" => return self.hlt(e),
            "*ack" => self.machine.irq_ack(e.qual as u8),
            // Exits the hypervisor keeps, reported when its alarm went off: the devices'
            // deadline has come (the clock moved on with the line); the guest resumes.
            "extirq" | "preempt" | "irqwin" | "nmiwin" => self.alarm = None,
            ".rdmsr" | ".wrmsr" => self.msr(e)?,
            "movcr" => self.movcr(e)?,
            ".movdr" => self.movdr(e)?,
            "#db" => {
                let dr6 = self.get(Reg::Dr6)?;
                self.regs.set(Reg::Dr6, dr6 | e.qual);
                self.exc("#db")?;
            }
            ".xsetbv" => {
                if self.get(Reg::Cx)? as u32 == 0 {
                    let v = self.edx_eax()?;
                    self.regs.set(Reg::Xcr0, v);
                    self.skip(e)?;
                } else {
                    self.exc("#gp,0")?;
                }
            }
            "eptfault" => {
                let why = format!(
                    "{} guest-physical address {:#x} (nothing is mapped there and no device is emulated)",
                    if e.qual & 2 != 0 { "write to" } else { "access to" },
                    e.pa.unwrap_or(0)
                );
                return Ok(Some(Outcome::Unhandled(self.diagnose(e, &why))));
            }
            n if n.starts_with('.') => {
                let msg = format!(
                    "unknown instruction {} at pc {:#x}: #ud injected",
                    &n[1..],
                    e.pc.unwrap_or(0)
                );
                self.warn(msg);
                self.exc("#ud")?;
            }
            n if n.starts_with('*') => self.warn(format!("unknown notification {n} ignored")),
            n => {
                let why = match n {
                    "triplef" => "triple fault".to_string(),
                    _ if n.starts_with('!') => format!("VM entry failed ({})", &n[1..]),
                    _ if n.starts_with('#') => format!("exception {n} in the guest"),
                    _ => format!("exit {n} is not handled"),
                };
                return Ok(Some(Outcome::Unhandled(self.diagnose(e, &why))));
            }
        }
        Ok(None)
    }

    /// edx:eax as one value (wrmsr, xsetbv).
    fn edx_eax(&mut self) -> Result<u64, String> {
        Ok((self.get(Reg::Dx)? & 0xffff_ffff) << 32 | (self.get(Reg::Ax)? & 0xffff_ffff))
    }

    fn io(&mut self, e: &Exit) -> Result<Option<Outcome>, String> {
        let io = Io::decode(e.qual);
        if io.string {
            let why = format!(
                "string i/o ({}{}) on port {:#x} is not emulated",
                if io.rep { "rep " } else { "" },
                if io.input { "ins" } else { "outs" },
                io.port
            );
            return Ok(Some(Outcome::Unhandled(self.diagnose(e, &why))));
        }
        let ax = self.get(Reg::Ax)?;
        if io.input {
            let v = self.machine.io_in(io.port, io.size);
            self.regs.set(Reg::Ax, pcdev::merge_in(ax, io.size, v));
        } else {
            self.machine
                .io_out_to(io.port, io.size, ax as u32, &mut VmMem(&mut self.vm));
        }
        self.skip(e)?;
        Ok(None)
    }

    fn cpuid(&mut self, e: &Exit) -> Result<(), String> {
        let leaf = self.get(Reg::Ax)? as u32;
        let sub = self.get(Reg::Cx)? as u32;
        let (r, known) = cpu::cpuid(leaf, sub);
        if !known {
            self.warn(format!("unknown cpuid leaf {leaf:#x}: zeros"));
        }
        for (reg, v) in [Reg::Ax, Reg::Bx, Reg::Cx, Reg::Dx].into_iter().zip(r) {
            self.regs.set(reg, u64::from(v));
        }
        self.skip(e)
    }

    fn hlt(&mut self, e: &Exit) -> Result<Option<Outcome>, String> {
        self.skip(e)?;
        if self.machine.irq_posted() {
            return Ok(None);
        }
        // Nothing pending: with interrupts off nothing ever will be.
        if self.get(Reg::Flags)? & FLAGS_IF == 0 {
            let pc = self.get(Reg::Pc)?;
            return Ok(Some(Outcome::Halted { pc }));
        }
        self.halted = true;
        if let Some(mut g) = self.guest_clock {
            g.halt((self.clock)().0);
            self.guest_clock = Some(g);
        }
        Ok(None)
    }

    fn msr(&mut self, e: &Exit) -> Result<(), String> {
        let rd = e.name == ".rdmsr";
        let idx = self.get(Reg::Cx)? as u32;
        // pcdev names the registers behind MSRs as the regs file does (a test in
        // regs.rs checks each is a [`Reg`]).
        let msr = cpu::msr(idx).map(|m| match m {
            Msr::Reg(n) => Reg::from_name(n).map_or(Place::Zero, Place::Reg),
            Msr::Kept(v) => Place::Kept(v),
            Msr::Zero => Place::Zero,
        });
        if rd {
            let v = match msr {
                Some(Place::Reg(r)) => self.get(r)?,
                Some(Place::Kept(init)) => *self.kept.get(&idx).unwrap_or(&init),
                Some(Place::Zero) => 0,
                None => {
                    self.warn(format!("read from unknown MSR {idx:#x}: 0"));
                    0
                }
            };
            self.regs.set(Reg::Ax, v & 0xffff_ffff);
            self.regs.set(Reg::Dx, v >> 32);
        } else {
            let v = self.edx_eax()?;
            match msr {
                Some(Place::Reg(r)) => self.regs.set(r, v),
                Some(Place::Kept(_)) => {
                    self.kept.insert(idx, v);
                }
                Some(Place::Zero) => {}
                None => self.warn(format!("write to unknown MSR {idx:#x} ignored")),
            }
        }
        self.skip(e)
    }

    fn movcr(&mut self, e: &Exit) -> Result<(), String> {
        let q = e.qual;
        let gpr = Reg::GPR[(q >> 8 & 15) as usize];
        match (q & 15, q >> 4 & 3) {
            (0, 0) => {
                let v = self.get(gpr)?;
                self.regs.set(Reg::Cr0Real, v);
            }
            (0, 1) => {
                let v = self.get(Reg::Cr0Fake)?;
                self.regs.set(gpr, v);
            }
            (0, 2) => {
                let v = self.get(Reg::Cr0Real)?;
                self.regs.set(Reg::Cr0Real, v & !8);
            }
            (4, 0) => {
                let v = self.get(gpr)?;
                self.regs.set(Reg::Cr4Real, v);
            }
            (4, 1) => {
                let v = self.get(Reg::Cr4Fake)?;
                self.regs.set(gpr, v);
            }
            (cr, op) => {
                self.warn(format!(
                    "control register access CR{cr} type {op} not emulated: #ud injected"
                ));
                return self.exc("#ud");
            }
        }
        self.skip(e)
    }

    fn movdr(&mut self, e: &Exit) -> Result<(), String> {
        const DR: [Option<Reg>; 8] = [
            Some(Reg::Dr0),
            Some(Reg::Dr1),
            Some(Reg::Dr2),
            Some(Reg::Dr3),
            None,
            None,
            Some(Reg::Dr6),
            Some(Reg::Dr7),
        ];
        let q = e.qual;
        let Some(dr) = DR[(q & 7) as usize] else {
            return self.exc("#gp,0");
        };
        let gpr = Reg::GPR[(q >> 8 & 15) as usize];
        if q & 16 != 0 {
            let v = self.get(dr)?;
            self.regs.set(gpr, v);
        } else {
            let v = self.get(gpr)?;
            self.regs.set(dr, v);
        }
        self.skip(e)
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

#[cfg(test)]
mod tests;
