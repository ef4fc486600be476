//! virtio-console (QEMU's virtio-serial) with the multiport control queue: every port the
//! device adds (each QEMU `virtserialport` or `virtconsole`) becomes one [`Port`], a
//! [`Link`] carrying one 9P session. The host side opening or closing a port (a client
//! connecting to or leaving the port's chardev socket) arrives as a PORT_OPEN control
//! event and surfaces as `take_reset`. QEMU reports no such events for a `virtconsole`
//! (or a device without multiport): those ports behave like a UART, where a client's
//! Tversion is what starts a fresh session. What bytes mean is `ninep::link`'s business:
//! this driver only says when a connection changed and whether old bytes may precede the
//! new client's ([`Reset::Resync`]).
//!
//! Everything is polled: each `Link` call first drains the device's used rings. The
//! device's INTx only wakes the idle loop.
//!
//! The control messages (their encoding, the events, which queues a port uses) are the
//! `virtio` crate's `console` module, host-tested there; this file is the device glue:
//! buffers on the rings, the ports' open/close bookkeeping and the [`Link`] of each port.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::arch::pci::{Bdf, DmaFrame, FRAME_SIZE};
use crate::drivers::virtio::{self, Buffers, Queue, Transport};
use crate::drivers::{intx, irq};
use crate::transport::{Event, Link};
use ::virtio::console::{self as control, Control, Event as ControlEvent};
use ::virtio::feature::CONSOLE_MULTIPORT;
use ::virtio::Id;
use ninep::link::Reset;

/// Port ids served (QEMU's default max_nr_ports is 31). Each costs two ring frames up front.
const MAX_PORTS: u32 = 32;
/// Receive and transmit buffers per added port, one frame each.
const RX_BUFFERS: u16 = 8;
const TX_BUFFERS: u16 = 8;
/// Control receive buffers: slots of one frame. A PORT_NAME longer than a slot is cut.
const CTRL_SLOT: usize = 128;
const CTRL_SLOTS: u16 = (FRAME_SIZE / CTRL_SLOT) as u16;
/// Bound on data-then-control rounds in one poll.
const ROUNDS: usize = 8;
/// Bound on polls while waiting for the device to announce its ports.
const SETTLE_POLLS: u32 = 5_000_000;

struct PortState {
    rx: Buffers,
    tx: Buffers,
    /// Received buffers not yet consumed: (buffer, length, bytes already read).
    ready: VecDeque<(u16, usize, usize)>,
    added: bool,
    /// The host side has the port open (a client is connected).
    open: bool,
    /// The host side opened or closed since the last `event`.
    reset: Option<Reset>,
    /// Open (true) and close (false) events seen in the current poll round.
    events: Vec<bool>,
    name: String,
}

impl PortState {
    fn new(rx: Queue, tx: Queue) -> PortState {
        PortState {
            rx: Buffers::new(rx),
            tx: Buffers::new(tx),
            ready: VecDeque::new(),
            added: false,
            open: false,
            reset: None,
            events: Vec::new(),
            name: String::new(),
        }
    }

    /// Allocates and posts the port's buffers (once; they stay posted across remove/add).
    fn fill(&mut self, transport: &Transport) -> bool {
        if self.rx.has_frames() {
            return true;
        }
        if !self.rx.alloc(RX_BUFFERS) {
            return false;
        }
        if !self.tx.alloc(TX_BUFFERS) {
            self.rx.release();
            return false;
        }
        self.rx.post_all();
        transport.notify(self.rx.queue());
        true
    }

    /// Returns every received buffer to the device unread.
    fn discard(&mut self, transport: &Transport) {
        self.discard_front(self.ready.len(), transport);
    }

    /// Returns the `count` oldest received buffers to the device unread.
    fn discard_front(&mut self, count: usize, transport: &Transport) {
        let mut any = false;
        for _ in 0..count {
            let Some((b, _, _)) = self.ready.pop_front() else {
                break;
            };
            self.rx.repost(b);
            any = true;
        }
        if any {
            transport.notify(self.rx.queue());
        }
    }

    /// Decides whose connection the data reaped this round (`ready[mark..]`) belongs to,
    /// from the open and close events the control ring showed right after the reap.
    fn classify(&mut self, mark: usize, transport: &Transport) {
        let events = core::mem::take(&mut self.events);
        if !self.open {
            // Closed: nothing here is for a live connection (a new one's PORT_OPEN would
            // have been visible, since the device sends it before the connection's data).
            self.discard(transport);
            return;
        }
        let Some(&first) = events.first() else {
            return;
        };
        // Opened this round: what was reaped before belongs to the previous connection.
        self.discard_front(mark, transport);
        // Only an open from closed makes this round's data all new; after a close and an
        // open together, the old connection's last bytes and the new one's first may share
        // the ring, and the session skips to the new client's Tversion.
        if !(first && events.len() == 1) {
            self.reset = Some(Reset::Resync);
        }
    }

    /// Moves used buffers off both rings; `classify` then decides what received data is for.
    fn reap(&mut self, transport: &Transport) {
        self.tx.reap();
        let mut reposted = false;
        while let Some((b, len)) = self.rx.pop_used() {
            if len > 0 {
                self.ready.push_back((b, (len as usize).min(FRAME_SIZE), 0));
            } else {
                self.rx.repost(b);
                reposted = true;
            }
        }
        if reposted {
            transport.notify(self.rx.queue());
        }
    }

    fn recv(&mut self, transport: &Transport, out: &mut [u8]) -> usize {
        if self.reset.is_some() || !self.open {
            return 0;
        }
        let mut n = 0;
        let mut reposted = false;
        while n < out.len() {
            let Some(&mut (b, len, ref mut pos)) = self.ready.front_mut() else {
                break;
            };
            let got = match self.rx.frame(b) {
                Some(buf) => {
                    let end = (n + len - *pos).min(out.len());
                    buf.read_bytes(*pos, &mut out[n..end])
                }
                None => 0,
            };
            *pos += got;
            n += got;
            if *pos >= len || got == 0 {
                self.ready.pop_front();
                self.rx.repost(b);
                reposted = true;
            }
        }
        if reposted {
            transport.notify(self.rx.queue());
        }
        n
    }

    fn send(&mut self, transport: &Transport, data: &[u8]) -> usize {
        if !self.open {
            // Nobody is listening: the device would discard it anyway.
            return data.len();
        }
        let mut n = 0;
        while n < data.len() {
            let Some(chunk) = self.tx.send(|buf| buf.write_bytes(0, &data[n..])) else {
                break;
            };
            n += chunk;
        }
        if n > 0 {
            transport.notify(self.tx.queue());
        }
        n
    }
}

/// The control queue pair: receive slots in one frame, one transmit message in flight.
struct ControlQueues {
    rx: Queue,
    rx_buf: DmaFrame,
    tx: Queue,
    tx_buf: DmaFrame,
    in_flight: bool,
    pending: VecDeque<Control>,
}

/// One virtio-console device.
pub struct Console {
    transport: Transport,
    /// Interrupts seen when this device's ISR was last read.
    irqs: irq::Seen,
    control: Option<ControlQueues>,
    ports: Vec<PortState>,
    /// Queues the device knows but no port uses (a pair cut short by memory); kept until
    /// the device is reset.
    _spare: Vec<Queue>,
}

impl Console {
    /// Initialises the device at `bdf`: features, queues for up to [`MAX_PORTS`] ports,
    /// DRIVER_OK, then DEVICE_READY on the control queue.
    pub fn new(bdf: Bdf) -> Result<Console, &'static str> {
        let transport = Transport::new(bdf)?;
        bdf.enable(true);
        let features = transport.negotiate(CONSOLE_MULTIPORT)?;
        let multiport = features & CONSOLE_MULTIPORT != 0;
        let max_ports = if multiport {
            transport
                .config_read32(control::CONFIG_MAX_NR_PORTS)
                .clamp(1, MAX_PORTS)
        } else {
            1
        };
        Console::setup(transport, multiport, max_ports)
    }

    fn setup(
        transport: Transport,
        multiport: bool,
        max_ports: u32,
    ) -> Result<Console, &'static str> {
        let mut spare = Vec::new();
        let (control, ports) = match Console::queues(&transport, multiport, max_ports, &mut spare) {
            Ok(parts) => parts,
            Err(e) => {
                // The device knows the rings' addresses: reset it before they are freed.
                transport.reset();
                drop(spare);
                return Err(e);
            }
        };
        transport.driver_ok();
        let mut console = Console {
            transport,
            irqs: irq::Seen::default(),
            control,
            ports,
            _spare: spare,
        };
        match &mut console.control {
            Some(c) => {
                for slot in 0..CTRL_SLOTS.min(c.rx.size()) {
                    let pa = c.rx_buf.pa() + (usize::from(slot) * CTRL_SLOT) as u64;
                    c.rx.post(pa, CTRL_SLOT as u32, true, slot);
                }
                console.transport.notify(&c.rx);
                c.pending
                    .push_back(Control::new(0, ControlEvent::DeviceReady, 1));
            }
            None => {
                // Without multiport the single port is always there and always open.
                let port = &mut console.ports[0];
                if !port.fill(&console.transport) {
                    return Err("virtio-console: out of memory");
                }
                port.added = true;
                port.open = true;
            }
        }
        console.poll();
        Ok(console)
    }

    /// Sets up the control queues and as many port queue pairs as the device and memory
    /// allow. A queue set up without its partner goes to `spare`, so it outlives the
    /// device's knowledge of it.
    fn queues(
        transport: &Transport,
        multiport: bool,
        max_ports: u32,
        spare: &mut Vec<Queue>,
    ) -> Result<(Option<ControlQueues>, Vec<PortState>), &'static str> {
        let control = if multiport {
            let rx = transport.setup_queue(control::CONTROL_RX, CTRL_SLOTS)?;
            let tx = match transport.setup_queue(control::CONTROL_TX, virtio::MAX_QUEUE) {
                Ok(tx) => tx,
                Err(e) => {
                    spare.push(rx);
                    return Err(e);
                }
            };
            let (Some(rx_buf), Some(tx_buf)) = (DmaFrame::new(), DmaFrame::new()) else {
                spare.extend([rx, tx]);
                return Err("virtio-console: out of memory");
            };
            Some(ControlQueues {
                rx,
                rx_buf,
                tx,
                tx_buf,
                in_flight: false,
                pending: VecDeque::new(),
            })
        } else {
            None
        };
        let mut ports = Vec::new();
        for id in 0..max_ports {
            let Ok((rxi, txi)) = control::queue_pair(id) else {
                break;
            };
            if txi >= transport.num_queues() {
                break;
            }
            match (
                transport.setup_queue(rxi, RX_BUFFERS),
                transport.setup_queue(txi, TX_BUFFERS),
            ) {
                (Ok(rx), Ok(tx)) => ports.push(PortState::new(rx, tx)),
                (rx, tx) => {
                    spare.extend(rx.ok().into_iter().chain(tx.ok()));
                    break;
                }
            }
        }
        if ports.is_empty() {
            if let Some(c) = control {
                spare.extend([c.rx, c.tx]);
            }
            return Err("virtio-console: no port queues");
        }
        Ok((control, ports))
    }

    /// Polls until the device has announced its ports and every control exchange is done.
    fn settle(&mut self) {
        // Idle twice in a row: the device queues a message's answers before it releases
        // the message, so the poll after the release has drained them all.
        let mut idle = 0;
        for _ in 0..SETTLE_POLLS {
            self.poll();
            match &self.control {
                Some(c) if c.in_flight || !c.pending.is_empty() => idle = 0,
                _ => idle += 1,
            }
            if idle == 2 {
                return;
            }
            core::hint::spin_loop();
        }
        log::warn!("virtio-console: device did not finish announcing ports");
    }

    /// The legacy interrupt line (PIC IRQ) of the device, if the firmware routed one.
    pub fn irq(&self) -> Option<u8> {
        let line = self.transport.bdf.interrupt_line();
        (line < 16).then_some(line)
    }

    /// Drains every used ring and advances the control exchange. Reading the ISR first
    /// also deasserts the device's INTx line.
    pub fn poll(&mut self) {
        // After an interrupt: read the ISR (lowering INTx), then unmask the line. Otherwise
        // skip both, as the rings are plain memory and register reads are costly VM exits
        // under KVM.
        if self.irqs.take() {
            self.transport.ack_interrupt();
            intx::unmask();
        }
        // Rounds of: data rings, then the control ring. The device sends a connection's
        // PORT_OPEN before its data and its data before its close, so data reaped before a
        // control read is explained by the events that read shows. Rounds repeat while
        // events come, so a closed connection's last bytes are dropped in the same poll.
        for _ in 0..ROUNDS {
            let Console {
                transport, ports, ..
            } = self;
            let marks: Vec<usize> = ports
                .iter_mut()
                .map(|p| {
                    let mark = p.ready.len();
                    if p.added {
                        p.reap(transport);
                    }
                    mark
                })
                .collect();
            let messages = self.read_control();
            let quiet = messages.is_empty();
            for (msg, name) in messages {
                self.handle(msg, name);
            }
            let Console {
                transport, ports, ..
            } = self;
            for (p, mark) in ports.iter_mut().zip(marks) {
                p.classify(mark, transport);
            }
            if quiet {
                break;
            }
        }
        if let Some(c) = &mut self.control {
            while c.tx.pop_used().is_some() {
                c.in_flight = false;
            }
            // One control message in flight: the device answers each (PORT_READY brings
            // NAME and OPEN) before releasing it, so answers never outrun receive slots.
            if !c.in_flight {
                if let Some(msg) = c.pending.pop_front() {
                    let len = c.tx_buf.write_bytes(0, &msg.encode());
                    c.in_flight = c.tx.post(c.tx_buf.pa(), len as u32, false, 0);
                    self.transport.notify(&c.tx);
                }
            }
        }
    }

    /// Takes every message off the control receive ring and gives the slots back.
    fn read_control(&mut self) -> Vec<(Control, String)> {
        let mut messages = Vec::new();
        let Some(c) = &mut self.control else {
            return messages;
        };
        let mut reposted = false;
        while let Some((slot, len)) = c.rx.pop_used() {
            let mut b = [0u8; CTRL_SLOT];
            let len = (len as usize).min(CTRL_SLOT);
            c.rx_buf
                .read_bytes(usize::from(slot) * CTRL_SLOT, &mut b[..len]);
            // A message shorter than a header is dropped; one with an unknown event is
            // kept (it still counts as control traffic) and ignored by `handle`.
            if let Ok((msg, rest)) = Control::decode(&b[..len]) {
                let name = control::port_name(rest);
                messages.push((msg, String::from_utf8_lossy(name).into()));
            }
            let pa = c.rx_buf.pa() + (usize::from(slot) * CTRL_SLOT) as u64;
            c.rx.post(pa, CTRL_SLOT as u32, true, slot);
            reposted = true;
        }
        if reposted {
            self.transport.notify(&c.rx);
        }
        messages
    }

    fn send_control(&mut self, msg: Control) {
        if let Some(c) = &mut self.control {
            c.pending.push_back(msg);
        }
    }

    fn handle(&mut self, msg: Control, name: String) {
        let id = msg.id;
        let event = msg.event();
        let index = match msg.port(self.ports.len()) {
            Ok(index) => index,
            Err(e) => {
                if event == Ok(ControlEvent::DeviceAdd) {
                    log::warn!("virtio-console: {e}");
                    self.send_control(Control::new(id, ControlEvent::PortReady, 0));
                }
                return;
            }
        };
        let Some(port) = self.ports.get_mut(index) else {
            return;
        };
        match event {
            Ok(ControlEvent::DeviceAdd) => {
                if !port.fill(&self.transport) {
                    log::warn!("virtio-console: out of memory for port {}", id);
                    self.send_control(Control::new(id, ControlEvent::PortReady, 0));
                    return;
                }
                port.added = true;
                self.send_control(Control::new(id, ControlEvent::PortReady, 1));
                // The device delivers nothing to a port the guest has not opened.
                self.send_control(Control::new(id, ControlEvent::PortOpen, 1));
            }
            Ok(ControlEvent::DeviceRemove) => {
                port.added = false;
                if port.open {
                    port.open = false;
                    port.reset.get_or_insert(Reset::Clean);
                    port.events.push(false);
                }
            }
            Ok(ControlEvent::PortOpen) => {
                let open = msg.value != 0;
                if open != port.open {
                    log::info!(
                        "virtio-console: port {} ({}) {}",
                        id,
                        port.name,
                        if open { "opened" } else { "closed" }
                    );
                    port.open = open;
                    port.reset.get_or_insert(Reset::Clean);
                    port.events.push(open);
                }
            }
            Ok(ControlEvent::PortName) => port.name = name,
            // Console ports, resizes, driver-only events and unknown ones: nothing to do.
            Ok(_) | Err(_) => {}
        }
    }

    fn port(&mut self, id: u32) -> Option<&mut PortState> {
        self.ports.get_mut(usize::try_from(id).ok()?)
    }

    fn added_ids(&self) -> Vec<u32> {
        (0..self.ports.len() as u32)
            .filter(|&i| self.ports[i as usize].added)
            .collect()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        // Stop all DMA before the rings and buffers go back to the allocator.
        self.transport.reset();
    }
}

/// One console port: a non-blocking byte link to one host chardev.
pub struct Port {
    console: Rc<RefCell<Console>>,
    id: u32,
    label: &'static str,
}

impl Port {
    /// Polls the device, then runs `f` on this port's state (None if the port is gone).
    fn polled<R>(&self, f: impl FnOnce(&mut PortState, &Transport) -> R) -> Option<R> {
        let mut c = self.console.borrow_mut();
        c.poll();
        let Console {
            transport, ports, ..
        } = &mut *c;
        ports.get_mut(self.id as usize).map(|p| f(p, transport))
    }
}

impl Link for Port {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.polled(|p, transport| p.recv(transport, buf))
            .unwrap_or(0)
    }

    fn send(&mut self, data: &[u8]) -> usize {
        self.polled(|p, transport| p.send(transport, data))
            .unwrap_or(data.len())
    }

    fn event(&mut self) -> Option<Event> {
        self.polled(|p, _| p.reset.take())
            .flatten()
            .map(Event::Reset)
    }

    /// "virtio:NAME" (or "virtio:ID" for an unnamed port).
    fn name(&self) -> &str {
        self.label
    }
}

/// Finds every virtio-console PCI device, initialises it and returns one [`Port`] per port
/// the device announced (for QEMU, one per `virtserialport`/`virtconsole`, in port id order).
///
/// Works by polling alone; it also registers a handler for each device's PIC line, so port
/// activity wakes the idle `hlt` (call with interrupts off, as at boot; they may be enabled
/// afterwards). Labels are leaked strings: ports live as long as the kernel.
pub fn probe() -> Vec<Port> {
    let mut ports = Vec::new();
    for bdf in virtio::find(Id::Console) {
        let mut console = match Console::new(bdf) {
            Ok(c) => c,
            Err(e) => {
                // A legacy-only device (QEMU disable-modern=on) has no virtio 1.x
                // capabilities; QEMU's default transitional device has both.
                log::warn!("virtio-console {bdf:?} not served: {e}");
                continue;
            }
        };
        console.settle();
        let irq = console.irq();
        log::info!(
            "virtio-console {:?}: ports {:?}, irq {:?}",
            bdf,
            console.added_ids(),
            irq
        );
        let labels: Vec<(u32, &'static str)> = console
            .added_ids()
            .into_iter()
            .map(|id| {
                let name = console.port(id).map(|p| p.name.clone()).unwrap_or_default();
                let label = if name.is_empty() {
                    format!("virtio:{id}")
                } else {
                    format!("virtio:{name}")
                };
                (id, &*Box::leak(label.into_boxed_str()))
            })
            .collect();
        let console = Rc::new(RefCell::new(console));
        for (id, label) in labels {
            ports.push(Port {
                console: console.clone(),
                id,
                label,
            });
        }
        if let Some(irq) = irq {
            intx::register(irq);
        }
    }
    ports
}
