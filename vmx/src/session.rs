//! One guest run over 9P, from a dialed client to the outcome: segment and VM, image
//! upload, the wait and terminal reader threads, the exit loop, and closing the VM.

use crate::dev::{clock::GuestClock, Machine};
use crate::kdisk::{self, KDisks};
use crate::knet;
use crate::layout::Layout;
use crate::loader::Image;
use crate::run::{Event, Outcome, Runner, Stats};
use crate::upload;
use crate::virtio::{self, blk::Blk, net::FrameSource, net::Net};
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
    /// Ask the hypervisor to run the PC devices itself ([`KERNEL_DEVICES`]) when it can.
    pub kernel_devices: bool,
    /// Send `go` (and `irq`, `exc`) without waiting for the reply: it travels with the
    /// `wait` read already in flight, so a simple exit costs one round trip of latency.
    pub pipeline: bool,
    /// Disks, network cards and COM2.
    pub devices: Devices<'a>,
}

/// A serial port's input (read by a thread; None: no input) and output.
pub type Serial<'a> = (Option<Box<dyn Read + Send>>, Box<dyn Write + 'a>);

/// The optional devices: virtio disks and network cards (on the PCI bus in that order),
/// and COM2.
#[derive(Default)]
pub struct Devices<'a> {
    /// Disks for the hypervisor to serve ([`crate::kdisk`]) where it can: before
    /// [`Devices::disks`] on the bus; where it cannot, they join them as the tool's own.
    pub kdisks: Vec<kdisk::Spec>,
    pub disks: Vec<Blk>,
    /// Each card with where its incoming frames come from (read by a thread).
    pub nets: Vec<(Net, FrameSource)>,
    /// Cards on links for the hypervisor to serve on its switch ([`crate::knet`]) where
    /// it can, after its disks and the `switch` cards on the bus; where it cannot, they
    /// join [`Devices::nets`] as the tool's own.
    pub links: Vec<knet::Card>,
    /// The MACs of cards the hypervisor serves on its switch (`-n switch`, `pci net`).
    pub switch_nets: Vec<[u8; 6]>,
    /// COM2's input (read by a thread) and output.
    pub com2: Option<Serial<'a>>,
    /// QEMU's fw_cfg device, for firmware in the guest (`--bios`; see
    /// [`crate::firmware`]).
    pub fwcfg: Option<pcdev::fwcfg::FwCfg>,
}

mod ask;
pub use ask::{KERNEL_COM2, KERNEL_DEVICES, KERNEL_PCI};

/// What a run ended with and what it cost.
pub struct Report {
    pub outcome: Result<Outcome, String>,
    pub stats: Stats,
    pub vm_id: String,
    /// The hypervisor ran the PC devices.
    pub kernel_devices: bool,
    /// Then: what it answered itself for this VM (port accesses, halts, interrupts,
    /// cpuid, MSR and debug register accesses), from the change in its status file's
    /// `inkernel` line.
    pub inkernel: Option<[u64; 4]>,
    /// The disks the hypervisor served, and what they cost.
    pub kdisks: Option<kdisk::Costs>,
    /// The links pumped through the hypervisor's switch, and what they cost.
    pub netlinks: Option<knet::Costs>,
}

/// The `inkernel io N hlt N irq N` line of the hypervisor's status file.
fn inkernel(client: &Client) -> Option<[u64; 4]> {
    let st = client.open("status", ninep_client::om::READ).ok()?;
    let text = String::from_utf8(st.read_all().ok()?).ok()?;
    let line = text.lines().find(|l| l.starts_with("inkernel "))?;
    let f: Vec<u64> = line
        .split(' ')
        .skip(2)
        .step_by(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Some([*f.first()?, *f.get(1)?, *f.get(2)?, *f.get(3)?])
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
    let (t0, b0) = (vm.round_trips(), vm.blocking_trips());
    let kernel = if o.kernel_devices {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // PCI and an unconnected COM2 in the kernel too where the hypervisor has them.
        let optional = ask::optional(o.devices.com2.is_some());
        let r = ask::ask(wall, &optional, |msg| vm.kernel_devices(msg)).map(|w| match w {
            Some(w) => (true, w.contains(&KERNEL_PCI), w.contains(&KERNEL_COM2)),
            None => (false, false, false),
        });
        match r {
            Ok(k) => k,
            Err(e) => {
                let _ = vm.close();
                return Err(e);
            }
        }
    } else {
        (false, false, false)
    };
    let (kernel, kernel_pci, kernel_com2) = kernel;
    // The devices here run on the guest's clock when the hypervisor tells it.
    let guest_clock = match (!kernel).then(|| vm.guest_clock()) {
        None => false,
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            let _ = vm.close();
            return Err(e);
        }
    };
    // The status file's counts before this VM ran (zeros the first time).
    let base = kernel.then(|| inkernel(&vm.client).unwrap_or([0; 4]));
    let _ = writeln!(
        o.log,
        "vmx: PC devices {}{}",
        match (kernel, guest_clock) {
            (true, _) if kernel_pci => "in the hypervisor, PCI configuration space too",
            (true, _) => "in the hypervisor",
            (false, true) => "here, on the guest's clock",
            (false, false) => "here, on the host's clock (the hypervisor tells no guest time)",
        },
        if kernel_com2 {
            ", COM2 (unconnected) too"
        } else {
            ""
        }
    );
    // -d disks in the hypervisor where it serves them, else the tool's own.
    let kspecs = std::mem::take(&mut o.devices.kdisks);
    let in_kernel = !kspecs.is_empty() && kernel_pci && kdisk::probe(&mut vm);
    if !kspecs.is_empty() && !in_kernel {
        let _ = writeln!(
            o.log,
            "vmx: the hypervisor serves no disks (pci blk): -d disks are the tool's virtio-blk"
        );
        let tool: Result<Vec<Blk>, String> = kspecs.iter().map(kdisk::Spec::tool_disk).collect();
        match tool {
            Ok(t) => {
                o.devices.disks.splice(0..0, t);
            }
            Err(e) => {
                let _ = vm.close();
                return Err(e);
            }
        }
    }
    // -n links: the hypervisor's cards and a switch port each where it has them, else
    // the tool's virtio-net.
    let mut links = std::mem::take(&mut o.devices.links);
    let ports = if links.is_empty() {
        None
    } else {
        let client = vm.client.clone();
        match knet::Ports::open(&mut vm, &client, kernel_pci, links.len()) {
            Ok(p) => {
                let _ = writeln!(
                    o.log,
                    "vmx: -n links: the hypervisor's virtio-net on its switch, a switch port pumped to each link here"
                );
                Some(p)
            }
            Err(why) => {
                let _ = writeln!(o.log, "vmx: -n links: the tool's virtio-net: {why}");
                o.devices.nets.extend(links.drain(..).map(knet::Card::tool));
                None
            }
        }
    };
    let every = Duration::from_millis(if o.tty { 250 } else { 5000 });
    if let Err(e) = upload::send(&mut vm, img, &mut o.log, o.tty, every) {
        let _ = vm.close();
        return Err(e);
    }
    let load_trips = vm.round_trips() - t0;
    let load_waits = vm.blocking_trips() - b0;

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
    let go = if kernel {
        let cons = match vm.open_cons().and_then(|c| Ok((c, vm.open_cons()?))) {
            Ok(c) => c,
            Err(e) => {
                let _ = vm.close();
                return Err(e);
            }
        };
        Some(crate::cons::spawn(cons.0, cons.1, tx.clone()))
    } else {
        None
    };
    if o.pipeline {
        let tx = tx.clone();
        vm.pipeline(Box::new(move |e| {
            let _ = tx.send(Event::CtlFailed(e));
        }));
    }
    let mut bus = virtio::Bus::new(layout.mem());
    let ndisks = o.devices.disks.len();
    let mut sources = Vec::new();
    let mut failed = None;
    for d in o.devices.disks.drain(..) {
        if let Err(e) = bus.add(virtio::Kind::Blk(d)) {
            failed = Some(e);
        }
    }
    for (n, src) in o.devices.nets.drain(..) {
        if let Err(e) = bus.add(virtio::Kind::Net(n)) {
            failed = Some(e);
        }
        sources.push(src);
    }
    if let Some(e) = failed {
        let _ = vm.close();
        return Err(e);
    }
    if kernel_pci {
        if let Err(e) = bus.kernel_pci(&mut vm) {
            let _ = vm.close();
            return Err(e);
        }
    }
    // The kernel's disks after the tool's functions (which keep their ports and lines).
    let mut kdisks = None;
    if in_kernel {
        match KDisks::attach(&mut vm, kspecs, &mut o.log) {
            Ok(k) => kdisks = Some(k),
            Err(e) => {
                let _ = vm.close();
                return Err(e);
            }
        }
    }
    if let Err(e) = switch_nets(&mut vm, kernel_pci, &o.devices.switch_nets) {
        let _ = vm.close();
        return Err(e);
    }
    // The links' cards last, their pumps started.
    let mut pumps = None;
    if let Some(p) = ports {
        match p.attach(&mut vm, links, tx.clone()) {
            Ok(p) => pumps = Some(p),
            Err(e) => {
                let _ = vm.close();
                return Err(e);
            }
        }
    }
    for (k, mut src) in sources.into_iter().enumerate() {
        let tx = tx.clone();
        let i = ndisks + k;
        std::thread::spawn(move || loop {
            match src() {
                Ok(Some(f)) => {
                    if tx.send(Event::Frame(i, f)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = tx.send(Event::LinkDown(i, "the peer closed the link".into()));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Event::LinkDown(i, e.to_string()));
                    return;
                }
            }
        });
    }
    let mut com2_out = None;
    if let Some((input, out)) = o.devices.com2.take() {
        com2_out = Some(out);
        if let Some(r) = input {
            let tx = tx.clone();
            spawn_reader(r, move |b| match b {
                Some(b) => tx.send(Event::Com2(b)).is_ok(),
                None => false,
            });
        }
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
    let mut machine = Machine::new(layout);
    if let Some(f) = o.devices.fwcfg.take() {
        machine.firmware(layout, f);
        // With -D the firmware's own debug log goes to the log.
        machine.fw_debug = o.debug.then(Vec::new);
    }
    let mut runner = Runner::new(vm, machine, Box::new(clock), o.out, o.log);
    runner.debug = o.debug;
    runner.trace = o.trace;
    runner.pipeline = o.pipeline;
    runner.attach(bus);
    if kernel_pci {
        runner.machine.pci.enable_io();
    }
    runner.com2_out = com2_out;
    runner.preset(&img.regs);
    runner.guest_clock = guest_clock.then(GuestClock::default);
    if let Some(go) = go {
        runner.kernel_devices(go);
    }
    let outcome = runner.run(&rx);
    let mut stats = runner.stats.clone();
    stats.elapsed = start.elapsed();
    stats.disk_bytes = runner
        .machine
        .virtio
        .devs
        .iter()
        .map(|d| match &d.kind {
            virtio::Kind::Blk(b) => b.bytes,
            virtio::Kind::Net(_) => 0,
        })
        .sum();
    stats
        .by_reason
        .insert("(load)".into(), (0, load_trips, load_waits));
    let vm = runner.into_vm();
    // The segment disks' changes back in their files while the VM still holds them.
    let saved = match kdisks.as_mut() {
        Some(k) => k.write_back(&vm),
        None => Ok(()),
    };
    let counts = match (kernel, base) {
        (true, Some(b)) => inkernel(&vm.client).map(|c| {
            [
                c[0].saturating_sub(b[0]),
                c[1].saturating_sub(b[1]),
                c[2].saturating_sub(b[2]),
                c[3].saturating_sub(b[3]),
            ]
        }),
        _ => None,
    };
    let client = vm.client.clone();
    let outcome = match (outcome, vm.close()) {
        (Ok(o), Err(e)) if !matches!(o, Outcome::Unhandled(_)) => {
            Err(format!("closing the VM: {e}"))
        }
        (o, _) => o,
    };
    // The links' ports leave the switch.
    let netlinks = pumps.map(knet::Pumps::finish);
    if let Some(c) = &netlinks {
        let frames = c.to_links + c.from_links;
        stats
            .by_reason
            .insert(knet::ROW.into(), (frames, c.trips, c.trips));
    }
    // The queue server ends with the VM; the disks' segments go.
    let (costs, kdone) = match kdisks.map(|k| k.finish(&client)) {
        Some(Ok(c)) => (Some(c), Ok(())),
        Some(Err(e)) => (None, Err(e)),
        None => (None, Ok(())),
    };
    let outcome = match (outcome, saved.and(kdone)) {
        (Ok(o), Err(e)) if !matches!(o, Outcome::Unhandled(_)) => Err(e),
        (o, _) => o,
    };
    if let Some(c) = &costs {
        stats.disk_bytes += c.queue.2;
        for (name, (n, t, l)) in [
            (kdisk::LOAD, (0, c.load.trips, c.load.latency_bound)),
            (kdisk::QUEUE, (c.queue.0, c.queue.1, c.queue.3)),
            (kdisk::SAVE, (0, c.save.trips, c.save.latency_bound)),
        ] {
            if t > 0 {
                stats.by_reason.insert(name.into(), (n, t, l));
            }
        }
    }
    Ok(Report {
        outcome,
        stats,
        vm_id: id,
        kernel_devices: kernel,
        inkernel: counts,
        kdisks: costs,
        netlinks,
    })
}

/// Asks the hypervisor for a card on its switch per MAC (`pci net`, `-n switch`): only
/// on its in-kernel PCI bus.
fn switch_nets(
    vm: &mut dyn crate::vmfs::Vmfs,
    kernel_pci: bool,
    macs: &[[u8; 6]],
) -> Result<(), String> {
    if macs.is_empty() {
        return Ok(());
    }
    if !kernel_pci {
        return Err(
            "-n switch: the hypervisor serves no PCI bus of its own (no pci extension)".into(),
        );
    }
    for m in macs {
        vm.ctl(&format!("pci net {}", netswitch::Mac(*m)))
            .map_err(|e| format!("-n switch: {e}"))?;
    }
    Ok(())
}

fn spawn_input(r: Box<dyn Read + Send>, tx: Sender<Event>) {
    spawn_reader(r, move |b| match b {
        Some(b) => tx.send(Event::Input(b)).is_ok(),
        None => {
            let _ = tx.send(Event::InputClosed);
            false
        }
    });
}

/// Reads `r` on a thread, handing each chunk (then None at its end) to `f` until it
/// returns false.
fn spawn_reader(
    mut r: Box<dyn Read + Send>,
    mut f: impl FnMut(Option<Vec<u8>>) -> bool + Send + 'static,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    f(None);
                    return;
                }
                Ok(n) => {
                    if !f(Some(buf[..n].to_vec())) {
                        return;
                    }
                }
            }
        }
    });
}
