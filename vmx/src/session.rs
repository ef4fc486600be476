//! One guest run over 9P, from a dialed client to the outcome: segment and VM, image
//! upload, the wait and terminal reader threads, the exit loop, and closing the VM.

use crate::dev::Machine;
use crate::layout::Layout;
use crate::loader::Image;
use crate::run::{Event, Outcome, Runner, Stats};
use crate::upload;
use crate::vmfs::{NinepVm, Vmfs};
use ninep_client::Client;
use std::io::{Read, Write};
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How to run.
pub struct Options<'a> {
    /// Segment name to create.
    pub segment: String,
    /// Where COM1 (and the debug console) output goes.
    pub out: Box<dyn Write + 'a>,
    /// COM1 input, read by a thread.
    pub input: Option<Box<dyn Read + Send>>,
    /// Messages, progress, reports.
    pub log: Box<dyn Write + 'a>,
    /// Whether `log` is a terminal (progress redraws one line).
    pub tty: bool,
    pub debug: bool,
    /// Where to log every wait line and ctl command, if anywhere.
    pub trace: Option<Box<dyn Write + 'a>>,
    /// Send `go` (and `irq`, `exc`) without waiting for the reply: it travels with the
    /// `wait` read already in flight, so a simple exit costs one round trip of latency.
    pub pipeline: bool,
}

/// What a run ended with and what it cost.
pub struct Report {
    pub outcome: Result<Outcome, String>,
    pub stats: Stats,
    pub vm_id: String,
}

/// Runs `img` in a new VM; Err only when the VM could not be set up.
pub fn run(
    client: Client,
    layout: &Layout,
    img: &Image,
    mut o: Options<'_>,
) -> Result<Report, String> {
    let mut vm = NinepVm::create(
        client,
        &o.segment,
        layout.segment_size(),
        &layout.map_text(&o.segment),
    )?;
    let id = vm.id.clone();
    let _ = writeln!(
        o.log,
        "vmx: VM {id}, segment {} of {}",
        o.segment,
        upload::human(layout.segment_size() as f64)
    );
    let t0 = vm.round_trips();
    let every = Duration::from_millis(if o.tty { 250 } else { 5000 });
    if let Err(e) = upload::send(&mut vm, img, &mut o.log, o.tty, every) {
        let _ = vm.close();
        return Err(e);
    }
    let load_trips = vm.round_trips() - t0;

    let (tx, rx) = channel();
    let wait = match vm.open_wait() {
        Ok(w) => w,
        Err(e) => {
            let _ = vm.close();
            return Err(e);
        }
    };
    std::thread::spawn({
        let tx = tx.clone();
        move || loop {
            match wait.read_at(0, 512) {
                Ok(b) if b.is_empty() => {
                    let _ = tx.send(Event::WaitFailed("wait returned nothing".into()));
                    return;
                }
                Ok(b) => {
                    for l in String::from_utf8_lossy(&b)
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                    {
                        if tx.send(Event::Exit(l.to_string())).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Event::WaitFailed(e.to_string()));
                    return;
                }
            }
        }
    });
    if o.pipeline {
        let tx = tx.clone();
        vm.pipeline(Box::new(move |e| {
            let _ = tx.send(Event::CtlFailed(e));
        }));
    }
    if let Some(r) = o.input.take() {
        spawn_input(r, tx);
    }

    let start = Instant::now();
    let clock = move || {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        (start.elapsed().as_nanos() as u64, wall)
    };
    let mut runner = Runner::new(vm, Machine::new(layout), Box::new(clock), o.out, o.log);
    runner.debug = o.debug;
    runner.trace = o.trace;
    runner.pipeline = o.pipeline;
    runner.preset(&img.regs);
    let outcome = runner.run(&rx);
    let mut stats = runner.stats.clone();
    stats.elapsed = start.elapsed();
    stats
        .by_reason
        .insert("(load)".into(), (0, load_trips, load_trips));
    let vm = runner.into_vm();
    let outcome = match (outcome, vm.close()) {
        (Ok(o), Err(e)) if !matches!(o, Outcome::Unhandled(_)) => {
            Err(format!("closing the VM: {e}"))
        }
        (o, _) => o,
    };
    Ok(Report {
        outcome,
        stats,
        vm_id: id,
    })
}

fn spawn_input(mut r: Box<dyn Read + Send>, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Event::InputClosed);
                    return;
                }
                Ok(n) => {
                    if tx.send(Event::Input(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
}
