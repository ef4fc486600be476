//! The exit loop against a fake hypervisor: each `go` releases the next scripted batch
//! of wait lines; registers and memory are a table and a byte array.

use super::*;
use crate::layout::Layout;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::mpsc::{channel, Sender};

struct Fake {
    steps: VecDeque<Vec<String>>,
    tx: Sender<Event>,
    ctl: Rc<RefCell<Vec<String>>>,
    regs: BTreeMap<String, u64>,
    mem: Vec<u8>,
    trips: u64,
    regs_reads: Rc<Cell<u64>>,
}

impl Vmfs for Fake {
    fn ctl(&mut self, cmd: &str) -> Result<(), String> {
        self.trips += 1;
        self.ctl.borrow_mut().push(cmd.to_string());
        if let Some(a) = cmd.strip_prefix("go") {
            for kv in a.trim().split(';').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').ok_or("number of fields wrong")?;
                let v = crate::layout::parse_u64(v).ok_or("invalid value")?;
                self.regs.insert(k.to_string(), v);
            }
            if let Some(step) = self.steps.pop_front() {
                for l in step {
                    self.tx.send(Event::Exit(l)).unwrap();
                }
            }
        }
        Ok(())
    }
    fn read_regs(&mut self) -> Result<String, String> {
        self.trips += 1;
        self.regs_reads.set(self.regs_reads.get() + 1);
        Ok(self
            .regs
            .iter()
            .map(|(k, v)| format!("{k} {v:#018x}\n"))
            .collect())
    }
    fn write_regs(&mut self, _: &str) -> Result<(), String> {
        self.trips += 1;
        Ok(())
    }
    fn read_mem(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        self.trips += 1;
        let a = addr as usize;
        self.mem
            .get(a..a + len)
            .map(|b| b.to_vec())
            .ok_or_else(|| "out of range".into())
    }
    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        self.trips += 1;
        self.mem[addr as usize..addr as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn round_trips(&self) -> u64 {
        self.trips
    }
}

struct Run {
    outcome: Result<Outcome, String>,
    ctl: Vec<String>,
    out: Vec<u8>,
    log: String,
    stats: Stats,
    regs_reads: u64,
}

fn io_line(port: u16, size: u8, input: bool, pc: u64, ax: u64) -> String {
    let q = u64::from(port) << 16 | u64::from(size - 1) | if input { 8 } else { 0 };
    format!("io {q:#x} pc {pc:#x} sp 0x8000 ilen 0x1 iinfo 0x0 ax {ax:#x}")
}

/// Runs `steps` (the first batch is released by the first `go`).
fn run(steps: Vec<Vec<String>>, regs: &[(&str, u64)], mem: Vec<u8>) -> Run {
    run_with(steps, regs, mem, |_| {}).0
}

/// Like [`run`], with `setup` applied to the runner first; also gives back guest memory.
fn run_with<'a>(
    steps: Vec<Vec<String>>,
    regs: &[(&str, u64)],
    mem: Vec<u8>,
    setup: impl FnOnce(&mut Runner<'a, Fake>),
) -> (Run, Vec<u8>) {
    let (tx, rx) = channel();
    let ctl = Rc::new(RefCell::new(Vec::new()));
    let reads = Rc::new(Cell::new(0));
    let fake = Fake {
        steps: steps.into(),
        tx: tx.clone(),
        ctl: ctl.clone(),
        regs: regs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        mem,
        trips: 0,
        regs_reads: reads.clone(),
    };
    let out = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::new(RefCell::new(Vec::new()));
    struct W(Rc<RefCell<Vec<u8>>>);
    impl Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // A clock that moves 1 ms each time it is read.
    let t = Cell::new(0u64);
    let clock = move || {
        t.set(t.get() + 1_000_000);
        (t.get(), 1_795_581_189)
    };
    let layout = Layout::new(16 << 20).unwrap();
    let mut r = Runner::new(
        fake,
        Machine::new(&layout),
        Box::new(clock),
        Box::new(W(out.clone())),
        Box::new(W(log.clone())),
    );
    r.preset(&[(Reg::Pc, 0x1000)]);
    setup(&mut r);
    let outcome = r.run(&rx);
    let stats = r.stats.clone();
    let mem = std::mem::take(&mut r.vm.mem);
    drop(r);
    let ctl = ctl.borrow().clone();
    let out = out.borrow().clone();
    let log = String::from_utf8(log.borrow().clone()).unwrap();
    (
        Run {
            outcome,
            ctl,
            out,
            log,
            stats,
            regs_reads: reads.get(),
        },
        mem,
    )
}

#[test]
fn serial_output_in_and_done() {
    let r = run(
        vec![
            vec![io_line(0x3f8, 1, false, 0x1000, 0x48)],
            vec![io_line(0x3f8, 1, false, 0x1001, 0x69)],
            vec![io_line(0x3fd, 1, true, 0x1002, 0x1234)],
            vec![io_line(0xf4, 1, false, 0x1003, 0x7)],
        ],
        &[],
        vec![],
    );
    assert_eq!(r.outcome, Ok(Outcome::Done(7)));
    assert_eq!(r.out, b"Hi");
    assert_eq!(
        r.ctl,
        [
            "go pc=0x1000;",
            "go pc=0x1001;",
            "go pc=0x1002;",
            "go ax=0x1260;pc=0x1003;"
        ]
    );
    // Wait fields spare every regs read: 2 round trips per exit (wait + go), 1 for the last.
    assert_eq!(r.regs_reads, 0);
    assert_eq!(r.stats.by_reason["io"], (4, 7, 7));
    assert_eq!(r.stats.by_reason["(start)"], (0, 1, 1));
    assert_eq!(r.stats.total(), (4, 8, 8));
    assert!(r.stats.report().contains("io"));
}

#[test]
fn cpuid_and_msrs() {
    let r = run(
        vec![
            vec![".cpuid 0x0 pc 0x1000 sp 0x8000 ilen 0x2 iinfo 0x0".into()],
            vec![".wrmsr 0x0 pc 0x1002 sp 0x8000 ilen 0x2 iinfo 0x0".into()],
            vec![".rdmsr 0x0 pc 0x1004 sp 0x8000 ilen 0x2 iinfo 0x0".into()],
            vec![io_line(0xf4, 1, false, 0x1006, 0)],
        ],
        &[("ax", 0), ("cx", 0), ("dx", 0), ("pc", 0x1000), ("efer", 0)],
        vec![],
    );
    assert_eq!(r.outcome, Ok(Outcome::Done(0)));
    assert_eq!(
        r.ctl[1],
        "go ax=0x7;bx=0x756e6547;cx=0x6c65746e;dx=0x49656e69;pc=0x1002;"
    );
    // The wrmsr saw cx=0x6c65746e (unknown MSR): ignored with a message; then the
    // guest's state is what go set.
    assert!(
        r.log.contains("write to unknown MSR 0x6c65746e ignored"),
        "{}",
        r.log
    );
    assert_eq!(r.ctl[2], "go pc=0x1004;");
    assert!(
        r.ctl[3].starts_with("go ax=0x0;dx=0x0;pc=0x1006;"),
        "{}",
        r.ctl[3]
    );
}

#[test]
fn efer_pat_and_cr0_through_regs() {
    let r = run(
        vec![
            vec![".wrmsr 0x0 pc 0x1000 sp 0x8000 ilen 0x2 iinfo 0x0".into()],
            // mov cr0, eax (qual: CR0, type 0, GPR 0)
            vec!["movcr 0x0 pc 0x1002 sp 0x8000 ilen 0x3 iinfo 0x0".into()],
            vec![io_line(0xf4, 1, false, 0x1005, 0)],
        ],
        &[
            ("ax", 0x500),
            ("cx", 0xc000_0080),
            ("dx", 0),
            ("pc", 0x1000),
            ("efer", 0),
        ],
        vec![],
    );
    assert_eq!(r.outcome, Ok(Outcome::Done(0)));
    assert_eq!(r.ctl[1], "go efer=0x500;pc=0x1002;");
    assert_eq!(r.ctl[2], "go cr0real=0x500;pc=0x1005;");
}

/// A guest that starts PIT channel 0 at 100 Hz with only IRQ0 unmasked, halts, takes the
/// interrupt (its handler sends EOI) and is done. With `clock` the exit lines carry the
/// guest's clock, 1 us apart. Gives the steps, the pc after the hlt and the hlt's time.
fn timer_then_halt(clock: bool) -> (Vec<Vec<String>>, u64, u64) {
    let mut steps: Vec<Vec<String>> = Vec::new();
    let mut pc = 0x1000;
    let setup = [
        (0x21, 0xfe),
        (0xa1, 0xff),
        (0x43, 0x34),
        (0x40, 0x9c),
        (0x40, 0x2e),
    ];
    let mut t = 0;
    let time = |t: u64| {
        if clock {
            format!(" time {t:#x}")
        } else {
            String::new()
        }
    };
    for (port, v) in pcdev::pic::INIT_SEQUENCE.into_iter().chain(setup) {
        t += 1000;
        steps.push(vec![io_line(port, 1, false, pc, v.into()) + &time(t)]);
        pc += 1;
    }
    t += 1000;
    steps.push(vec![format!(
        ".hlt 0x0 pc {pc:#x} sp 0x8000 ilen 0x1 iinfo 0x0{}",
        time(t)
    )]);
    pc += 1;
    // After the wake-up go: the interrupt is taken, the handler sends EOI, then done.
    steps.push(vec![
        "*ack 32".into(),
        io_line(0x20, 1, false, 0x2000, 0x20),
    ]);
    steps.push(vec![io_line(0xf4, 1, false, pc, 0)]);
    (steps, pc, t)
}

/// Runs [`timer_then_halt`] to its end; gives the run, where `irq 32` is in its ctl
/// commands, the pc after the hlt and the hlt's time.
fn wake_by_timer(clock: bool) -> (Run, usize, u64, u64) {
    let (steps, pc, halted_at) = timer_then_halt(clock);
    let (r, i) = run_timer(steps, clock);
    (r, i, pc, halted_at)
}

/// Runs a guest that takes one timer interrupt (on the guest's clock if `clock`) to its
/// end; gives the run and where `irq 32` is in its ctl commands.
fn run_timer(steps: Vec<Vec<String>>, clock: bool) -> (Run, usize) {
    let (r, _) = run_with(steps, &[("flags", 0x202), ("pc", 0x1000)], vec![], |r| {
        r.guest_clock = clock.then(GuestClock::default);
    });
    assert_eq!(r.outcome, Ok(Outcome::Done(0)));
    let i = r
        .ctl
        .iter()
        .position(|c| c == "irq 32")
        .expect("irq posted");
    (r, i)
}

#[test]
fn timer_wakes_a_halted_guest() {
    let (r, i, pc, _) = wake_by_timer(false);
    // The wake-up go follows the irq and carries the pc past hlt.
    assert_eq!(r.ctl[i + 1], format!("go pc={pc:#x};"));
    assert_eq!(r.ctl.iter().filter(|c| c.starts_with("irq")).count(), 1);
    assert!(r.stats.by_reason.contains_key("(timer)"));
    assert_eq!(r.stats.by_reason["*ack"].0, 1);
}

#[test]
fn on_the_guests_clock_a_halt_gives_the_guest_its_time() {
    let (r, i, pc, halted_at) = wake_by_timer(true);
    // On the host's clock the 10 ms timer would have fired during the setup's exits
    // (1 ms each); on the guest's it fires after the halt, and the guest's clock is
    // moved on by the time it halted here before it runs again.
    assert!(i > pcdev::pic::INIT_SEQUENCE.len() + 5, "{:?}", r.ctl);
    let d: u64 = r.ctl[i + 1]
        .strip_prefix("advance ")
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", r.ctl));
    // The timer was set at guest time 13 us (the last setup write), due 10 ms later
    // (11,932 PIT ticks, 10,000,151 ns), which the hypervisor's alarm was told before
    // the halt; the halted guest is given the time up to the wake-up, which the fake
    // host clock's 1 ms steps may overshoot.
    let due = 13_000 + PERIOD;
    let first = r.ctl.iter().position(|c| *c == format!("alarm {due}"));
    assert!(first.is_some_and(|a| a < i), "{:?}", r.ctl);
    assert!(
        (due - halted_at..due - halted_at + 3_000_000).contains(&d),
        "{d}"
    );
    // Then the alarm for the next tick, and the go.
    assert_eq!(r.ctl[i + 2], format!("alarm {}", due + PERIOD));
    assert_eq!(r.ctl[i + 3], format!("go pc={pc:#x};"));
    assert_eq!(r.ctl.iter().filter(|c| c.starts_with("advance")).count(), 1);
}

/// The PIT's period in [`timer_then_halt`], in ns.
const PERIOD: u64 = 10_000_151;

#[test]
fn on_the_guests_clock_the_alarm_brings_the_timer() {
    // The guest runs instead of halting; the hypervisor stops it for the alarm.
    let (mut steps, pc, t) = timer_then_halt(true);
    let due = 13_000 + PERIOD;
    let n = steps.len() - 3;
    steps[n] = vec![format!(
        "preempt 0x0 pc {:#x} sp 0x8000 ilen 0x0 iinfo 0x0 time {:#x}",
        pc - 1,
        due + 500
    )];
    assert!(t < due);
    // The run ends at the done port, one byte past the hlt this guest never ran.
    let (r, i) = run_timer(steps, true);
    assert_eq!(r.ctl[i - 2], format!("alarm {due}"));
    // The alarm's exit brought the devices to the guest's time: no advance, the next
    // tick's alarm, and the guest resumes where it was.
    assert!(r.ctl[i - 1].starts_with("go"), "{:?}", r.ctl);
    assert_eq!(r.ctl[i + 1], format!("alarm {}", due + PERIOD));
    assert_eq!(r.ctl[i + 2], "go");
    assert!(
        !r.ctl.iter().any(|c| c.starts_with("advance")),
        "{:?}",
        r.ctl
    );
    assert!(!r.log.contains("unknown"), "{}", r.log);
    // The handler's EOI starts a hold in host time: the alarm is withdrawn until it
    // ends, and the go after the EOI carries no new one.
    let eoi = r
        .ctl
        .iter()
        .rposition(|c| c == "alarm")
        .expect("alarm withdrawn");
    assert!(eoi > i + 2, "{:?}", r.ctl);
    assert!(r.ctl[eoi + 1].starts_with("go"), "{:?}", r.ctl);
}

#[test]
fn halt_with_interrupts_off_ends_the_run() {
    let r = run(
        vec![vec![
            ".hlt 0x0 pc 0x1000 sp 0x8000 ilen 0x1 iinfo 0x0".into()
        ]],
        &[("flags", 0x2), ("pc", 0x1000)],
        vec![],
    );
    assert_eq!(r.outcome, Ok(Outcome::Halted { pc: 0x1001 }));
}

#[test]
fn unhandled_exception_reports_bytes_and_registers() {
    let mut mem = vec![0u8; 0x3000];
    mem[0x2010..0x2014].copy_from_slice(&[0x0f, 0x0b, 0x90, 0xf4]);
    let r = run(
        vec![vec![
            "#gp 0x0 pc 0x2010 sp 0x8000 ilen 0x0 iinfo 0x0 excode 0x0".into(),
        ]],
        &[
            ("pc", 0x1000),
            ("cr0real", 0x11),
            ("csbase", 0),
            ("efer", 0),
            ("ax", 0xdead),
        ],
        mem,
    );
    let Ok(Outcome::Unhandled(s)) = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(s.contains("exception #gp in the guest"), "{s}");
    assert!(s.contains("exit line: #gp 0x0 pc 0x2010"), "{s}");
    assert!(
        s.contains("instruction bytes at pc 0x2010 (physical 0x2010): 0f 0b 90 f4"),
        "{s}"
    );
    assert!(s.contains("ax 0x000000000000dead"), "{s}");
}

#[test]
fn unhandled_mmio_string_io_and_bad_lines() {
    let r = run(
        vec![vec![
            "eptfault 0x182 pc 0x1000 sp 0x0 ilen 0x6 iinfo 0x0 va 0xfee000b0 pa 0xfee000b0".into(),
        ]],
        &[("pc", 0x1000), ("cr0real", 0x11)],
        vec![0; 0x2000],
    );
    let Ok(Outcome::Unhandled(s)) = r.outcome else {
        panic!()
    };
    assert!(
        s.contains("write to guest-physical address 0xfee000b0"),
        "{s}"
    );

    let q = 0x3f8u64 << 16 | 0x10 | 0x20;
    let r = run(
        vec![vec![format!(
            "io {q:#x} pc 0x1000 sp 0x0 ilen 0x2 iinfo 0x0 ax 0x0"
        )]],
        &[("pc", 0x1000), ("cr0real", 0x8000_0011)],
        vec![0; 0x2000],
    );
    let Ok(Outcome::Unhandled(s)) = r.outcome else {
        panic!()
    };
    assert!(
        s.contains("string i/o on port 0x3f8 with paging on is not emulated"),
        "{s}"
    );

    let r = run(vec![vec!["garbage".into()]], &[], vec![]);
    assert!(r.outcome.unwrap_err().contains("invalid wait message"));

    let r = run(
        vec![vec![
            "!entrystate 0x0 pc 0x0 sp 0x0 ilen 0x0 iinfo 0x0".into()
        ]],
        &[],
        vec![0; 16],
    );
    let Ok(Outcome::Unhandled(s)) = r.outcome else {
        panic!()
    };
    assert!(s.contains("VM entry failed (entrystate)"), "{s}");
}

#[test]
fn unknown_instructions_get_ud() {
    let r = run(
        vec![
            vec![".vmcall 0x0 pc 0x1000 sp 0x0 ilen 0x3 iinfo 0x0".into()],
            vec![io_line(0xf4, 1, false, 0x1000, 0)],
        ],
        &[],
        vec![],
    );
    assert_eq!(r.outcome, Ok(Outcome::Done(0)));
    assert_eq!(r.ctl[1], "exc #ud");
    assert!(r.log.contains("unknown instruction vmcall"));
}

#[test]
fn terminal_input_reaches_the_uart() {
    let (tx, rx) = channel();
    let layout = Layout::new(16 << 20).unwrap();
    let fake = Fake {
        steps: vec![
            vec![io_line(0x3fd, 1, true, 0x1000, 0)],
            vec![io_line(0x3f8, 1, true, 0x1001, 0)],
            vec![io_line(0xf4, 1, false, 0x1002, 0)],
        ]
        .into(),
        tx: tx.clone(),
        ctl: Rc::new(RefCell::new(Vec::new())),
        regs: BTreeMap::new(),
        mem: vec![],
        trips: 0,
        regs_reads: Rc::new(Cell::new(0)),
    };
    let ctl = fake.ctl.clone();
    tx.send(Event::Input(b"q".to_vec())).unwrap();
    let mut r = Runner::new(
        fake,
        Machine::new(&layout),
        Box::new(|| (0, 0)),
        Box::new(std::io::sink()),
        Box::new(std::io::sink()),
    );
    assert_eq!(r.run(&rx), Ok(Outcome::Done(0)));
    let ctl = ctl.borrow();
    assert!(
        ctl.contains(&"go ax=0x61;pc=0x1001;".to_string()),
        "{ctl:?}"
    ); // LSR: data ready
    assert!(
        ctl.contains(&"go ax=0x71;pc=0x1002;".to_string()),
        "{ctl:?}"
    ); // 'q'
}

/// The guest of the virtio tests: enables I/O decoding of 00:01.0, sets up queue 0 at
/// page 4, makes a read of sector 1 available (header at 0x1000, data at 0x2000, status
/// at 0x3000), notifies, then reads the ISR and stops. With `kernel`, the hypervisor runs
/// the PIC (a fake console reader answers each launch as `cons` would).
fn virtio_disk_request(kernel: bool) -> (Run, Vec<u8>, u8) {
    use crate::virtio::{blk, Bus, Kind, IO_BASE};
    let mut mem = vec![0u8; 1 << 20];
    let desc = 4 * 4096;
    let put = |m: &mut Vec<u8>, i: usize, addr: u64, len: u32, flags: u16, next: u16| {
        let o = desc + 16 * i;
        m[o..o + 8].copy_from_slice(&addr.to_le_bytes());
        m[o + 8..o + 12].copy_from_slice(&len.to_le_bytes());
        m[o + 12..o + 14].copy_from_slice(&flags.to_le_bytes());
        m[o + 14..o + 16].copy_from_slice(&next.to_le_bytes());
    };
    put(&mut mem, 0, 0x1000, 16, 1, 1);
    put(&mut mem, 1, 0x2000, 512, 3, 2);
    put(&mut mem, 2, 0x3000, 1, 2, 0);
    let avail = desc + 16 * usize::from(crate::virtio::QUEUE_SIZE);
    mem[avail + 2] = 1; // one entry: head 0
    mem[0x1008] = 1; // sector 1
    mem[0x3000] = 0xff;
    let bar = IO_BASE;
    let steps = vec![
        vec![io_line(0xcf8, 4, false, 0x1000, 0x8000_0804)],
        vec![io_line(0xcfc, 2, false, 0x1001, 1)],
        vec![io_line(bar + 0x08, 4, false, 0x1002, 4)],
        vec![io_line(bar + 0x10, 2, false, 0x1003, 0)],
        vec![io_line(bar + 0x13, 1, true, 0x1004, 0)],
        vec![io_line(0xf4, 1, false, 0x1005, 0)],
    ];
    let disk: Vec<u8> = (0..2048u32).map(|i| (i / 512) as u8 + 0x40).collect();
    let mut irq = 0;
    let (r, mem) = run_with(steps, &[], mem, |r| {
        let mut bus = Bus::new(1 << 20);
        bus.add(Kind::Blk(blk::Blk::new(Box::new(disk), false, "t")))
            .unwrap();
        irq = bus.devs[0].irq;
        r.attach(bus);
        if kernel {
            // A console that stays empty: each stop (and the drain) reads empty.
            let (go, launched) = channel::<ConsCmd>();
            let tx = r.vm.tx.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                for c in launched {
                    n += u64::from(c == ConsCmd::Launched);
                    if tx.send(Event::ConsIdle(n)).is_err() {
                        return;
                    }
                }
            });
            r.kernel_devices(go);
        }
    });
    assert_eq!(r.outcome, Ok(Outcome::Done(0)));
    assert_eq!(mem[0x2000..0x2200], [0x41; 512]);
    assert_eq!(mem[0x3000], 0);
    // The ISR read gave 1 (used buffer) into al.
    assert!(r.ctl.iter().any(|c| c.contains("ax=0x1;")), "{:?}", r.ctl);
    // Its BAR's exits are counted apart: the two writes and the read.
    assert_eq!(r.stats.by_reason["io/virtio"].0, 3);
    (r, mem, irq)
}

#[test]
fn a_virtio_disk_request_through_the_exit_loop() {
    let (r, _, _) = virtio_disk_request(false);
    // The tool's PIC is uninitialised (every line masked): no interrupt is posted.
    assert!(!r.ctl.iter().any(|c| c.starts_with("line")), "{:?}", r.ctl);
}

#[test]
fn a_virtio_interrupt_drives_the_in_kernel_pic() {
    let (r, _, irq) = virtio_disk_request(true);
    // The notify raised INTA, the ISR read lowered it: both on the kernel's PIC input,
    // nothing posted with `irq`.
    let lines: Vec<&String> = r.ctl.iter().filter(|c| c.starts_with("line")).collect();
    assert_eq!(
        lines,
        [&format!("line {irq} 1"), &format!("line {irq} 0")],
        "{:?}",
        r.ctl
    );
    assert!(!r.ctl.iter().any(|c| c.starts_with("irq")), "{:?}", r.ctl);
}

#[test]
fn console_round_trips_count_reads_with_output_and_empty_ones() {
    let mut s = Stats::default();
    s.by_reason.insert(CONS.into(), (3, 3, 3));
    s.by_reason.insert(CONS_EMPTY.into(), (1, 1, 1));
    s.by_reason.insert("io".into(), (5, 10, 5));
    assert_eq!(s.console_trips(), 4);
    assert!(s.report().contains("(cons/empty)"));
}

/// String I/O with paging off, as firmware does it: `rep outsb` of a string to COM1 in
/// real mode (16-bit addresses: SI and CX count in their low halves), an `insb` of
/// fw_cfg's signature's first byte to ES:DI, and a `rep` with CX 0 that moves nothing.
#[test]
fn string_io_in_real_mode() {
    let outs = 0x3f8u64 << 16 | 0x10 | 0x20;
    let ins = 0x511u64 << 16 | 0x10 | 8;
    let line = |q: u64, pc: u64| format!("io {q:#x} pc {pc:#x} sp 0x0 ilen 0x2 iinfo 0x0 ax 0x0");
    let mut mem = vec![0u8; 0x3000];
    mem[0x1500..0x1503].copy_from_slice(b"hi\n");
    let (r, mem) = run_with(
        vec![
            vec![line(outs, 0x1000)],
            vec![line(ins, 0x1002)],
            vec![line(outs, 0x1004)],
            vec![io_line(crate::dev::DONE_PORT, 1, false, 0x1006, 0)],
        ],
        &[
            ("pc", 0x1000),
            ("cr0real", 0x10),
            ("cx", 0xdead_0003),
            ("si", 0x500),
            ("di", 0x600),
            ("dsbase", 0x1000),
            ("esbase", 0x2000),
            ("exitva", 0x1500),
            ("flags", 2),
        ],
        mem,
        |r| {
            let layout = Layout::new(16 << 20).unwrap();
            r.machine
                .firmware(&layout, crate::firmware::fw_cfg(&layout, None).unwrap());
        },
    );
    assert_eq!(r.outcome, Ok(Outcome::Done(0)), "{}", r.log);
    assert_eq!(r.out, b"hi\n");
    assert_eq!(&mem[0x2600..0x2602], b"Q\0");
    // Each instruction moved on; CX counted down in its low 16 bits only.
    assert!(r.ctl[1].contains("pc=0x1002"), "{:?}", r.ctl);
    assert!(r.ctl[1].contains("cx=0xdead0000"), "{:?}", r.ctl);
    assert!(r.ctl[1].contains("si=0x503"), "{:?}", r.ctl);
    assert!(r.ctl.iter().any(|c| c.contains("di=0x601")), "{:?}", r.ctl);
    assert!(r.ctl.iter().any(|c| c.contains("pc=0x1006")), "{:?}", r.ctl);
}
