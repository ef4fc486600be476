//! TCP/IP on the first NIC (smoltcp): an address by DHCP or from the command line, and a
//! listener on the 9P port whose every accepted connection is a [`Link`] of its own. The
//! kernel never opens a connection itself.
//!
//! One [`Stack`] is shared (single-threaded) by the listener and its connections. A
//! connection's full send buffer stalls only that connection: `send` takes nothing and
//! the session keeps its replies.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::IpAddr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::drivers::nic::{Nic, MTU_FRAME};
use crate::transport::{Event, Kind, Link, Listener};

/// Connections served at once (beyond them, clients wait in the listen backlog).
pub const MAX_CONNS: usize = 64;
/// Sockets kept listening, so that connections arriving together are all taken (a SYN
/// finding none is answered with a reset).
const BACKLOG: usize = 8;
/// Per-connection buffers: the receive window and unacknowledged replies.
const RX_BUF: usize = 32 * 1024;
const TX_BUF: usize = 64 * 1024;
/// A connection we closed that has not finished closing by then is reset.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most frames one [`Stack::poll`] takes from the NIC. smoltcp takes frames while
/// there are any; a flood that comes as fast as they are taken (a LAN's broadcast storm,
/// or a guest on another CPU broadcasting through the switch) would otherwise hold the
/// server in one poll, every other link and the sockets' replies waiting. The rest wait
/// for the next poll.
const RX_BUDGET: usize = 64;

/// How the interface gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    Dhcp,
    Static {
        addr: [u8; 4],
        prefix: u8,
        gw: Option<[u8; 4]>,
    },
}

fn now() -> Instant {
    Instant::from_millis(crate::arch::timer::millis() as i64)
}

/// smoltcp's view of a NIC: it gives at most `budget` more frames.
struct Dev<'a> {
    nic: &'a mut dyn Nic,
    budget: usize,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut dyn Nic);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        // The stack asked `can_send` first (transmit below); a frame lost here is
        // retransmitted by TCP.
        self.0.send(&frame);
        r
    }
}

impl Device for Dev<'_> {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.budget == 0 {
            return None;
        }
        let frame = self.nic.recv()?;
        self.budget -= 1;
        Some((RxToken(frame), TxToken(&mut *self.nic)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        self.nic.can_send().then_some(TxToken(&mut *self.nic))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU_FRAME;
        caps
    }
}

pub struct Stack {
    nic: Box<dyn Nic>,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    port: u16,
    /// `echoport=`: connections there echo bytes instead of serving 9P (benchmarks).
    echo_port: Option<u16>,
    /// Sockets not yet handed out (listening, or connected and waiting for `accept`), and
    /// their port.
    listening: Vec<(SocketHandle, u16)>,
    /// Connections handed out and not yet dropped.
    conns: usize,
    /// Dropped connections still closing, with the time they are reset at.
    closing: Vec<(SocketHandle, Instant)>,
    address: Option<Ipv4Cidr>,
}

impl Stack {
    pub fn new(
        mut nic: Box<dyn Nic>,
        addressing: Addressing,
        port: u16,
        echo_port: Option<u16>,
    ) -> Stack {
        let mac = nic.mac();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // Initial sequence numbers and ephemeral choices: varies per boot.
        config.random_seed = crate::arch::cpu::rdtsc()
            ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
        let dev = &mut Dev {
            nic: &mut *nic,
            budget: 0,
        };
        let iface = Interface::new(config, dev, now());
        let mut s = Stack {
            nic,
            iface,
            sockets: SocketSet::new(Vec::new()),
            dhcp: None,
            port,
            echo_port,
            listening: Vec::new(),
            conns: 0,
            closing: Vec::new(),
            address: None,
        };
        match addressing {
            Addressing::Dhcp => {
                s.dhcp = Some(s.sockets.add(dhcpv4::Socket::new()));
            }
            Addressing::Static { addr, prefix, gw } => {
                let cidr = Ipv4Cidr::new(Ipv4Address::from(addr), prefix);
                s.configure(cidr, gw.map(Ipv4Address::from), "command line");
            }
        }
        s.refill();
        s
    }

    /// "tcp!ADDR!PORT" once the interface has an address.
    pub fn address(&self) -> Option<String> {
        self.address
            .map(|a| format!("tcp!{}!{}", a.address(), self.port))
    }

    fn configure(&mut self, cidr: Ipv4Cidr, gw: Option<Ipv4Address>, how: &str) {
        self.iface.update_ip_addrs(|a| {
            a.clear();
            let _ = a.push(IpCidr::Ipv4(cidr));
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = gw {
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
        self.address = Some(cidr);
        log::info!(
            "net: {} ({how}); 9P on tcp!{}!{}",
            cidr,
            cidr.address(),
            self.port
        );
        crate::console::set_title(&alloc::format!(
            "{}: 9P on tcp!{}!{}",
            crate::VERSION,
            cidr.address(),
            self.port
        ));
    }

    /// Keeps `BACKLOG` sockets listening on the 9P port (one on the echo port) while there
    /// is room for more connections.
    fn refill(&mut self) {
        self.refill_port(self.port, BACKLOG);
        if let Some(p) = self.echo_port {
            self.refill_port(p, 1);
        }
    }

    fn refill_port(&mut self, port: u16, backlog: usize) {
        let sockets = &self.sockets;
        let mut idle = self
            .listening
            .iter()
            .filter(|&&(h, p)| {
                p == port && sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen
            })
            .count();
        while idle < backlog && self.conns + self.listening.len() < MAX_CONNS {
            idle += 1;
            let mut sock = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; RX_BUF]),
                tcp::SocketBuffer::new(vec![0; TX_BUF]),
            );
            if sock.listen(port).is_err() {
                return;
            }
            // 9P is request/response: Nagle would hold each reply for the client's ACK. A
            // request's ACK waits (smoltcp's default 10 ms) so that the reply, made in the
            // same pass, carries it: one frame instead of two.
            sock.set_nagle_enabled(false);
            self.listening.push((self.sockets.add(sock), port));
        }
    }

    /// Moves packets both ways (at most [`RX_BUDGET`] frames in) and runs DHCP and
    /// closing sockets; true if anything moved or frames may be left.
    fn poll(&mut self) -> bool {
        let t = now();
        let mut dev = Dev {
            nic: &mut *self.nic,
            budget: RX_BUDGET,
        };
        let changed = self.iface.poll(t, &mut dev, &mut self.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        let more = dev.budget == 0;
        if let Some(h) = self.dhcp {
            let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
                Some(dhcpv4::Event::Configured(c)) => Some(Some((c.address, c.router))),
                Some(dhcpv4::Event::Deconfigured) => Some(None),
                None => None,
            };
            match event {
                Some(Some((addr, router))) => self.configure(addr, router, "DHCP"),
                Some(None) if self.address.is_some() => {
                    log::warn!("net: DHCP lease lost");
                    self.iface.update_ip_addrs(|a| a.clear());
                    self.address = None;
                }
                _ => {}
            }
        }
        if changed {
            self.refill();
        }
        let sockets = &mut self.sockets;
        self.closing.retain(|&(h, deadline)| {
            let s = sockets.get_mut::<tcp::Socket>(h);
            let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
            if done || t >= deadline {
                s.abort();
                sockets.remove(h);
                return false;
            }
            true
        });
        changed || more
    }

    /// A listening socket that has a connection now, taken off the listening set, and
    /// whether it came to the echo port.
    fn take_connected(&mut self) -> Option<(SocketHandle, bool)> {
        let sockets = &self.sockets;
        let i = self.listening.iter().position(|&(h, _)| {
            let s = sockets.get::<tcp::Socket>(h);
            !matches!(s.state(), tcp::State::Listen | tcp::State::SynReceived)
        })?;
        let (h, port) = self.listening.swap_remove(i);
        self.conns += 1;
        self.refill();
        Some((h, Some(port) == self.echo_port))
    }

    /// A connection's link dropped: close it (or reset it, if `abort`) and forget it.
    fn release(&mut self, h: SocketHandle, abort: bool) {
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        if abort {
            s.abort();
        } else {
            s.close();
        }
        self.closing.push((h, now() + CLOSE_TIMEOUT));
        self.conns -= 1;
        self.refill();
    }
}

/// The listener: polls the stack and hands out connections.
pub struct TcpListener {
    stack: Rc<RefCell<Stack>>,
    /// The switch the stack's NIC is a port of (`switch` on the command line).
    switch: Option<crate::switch::Shared>,
}

impl TcpListener {
    pub fn new(stack: Stack, switch: Option<crate::switch::Shared>) -> TcpListener {
        TcpListener {
            stack: Rc::new(RefCell::new(stack)),
            switch,
        }
    }

    pub fn address(&self) -> Option<String> {
        self.stack.borrow().address()
    }
}

impl Listener for TcpListener {
    fn poll(&mut self) -> bool {
        self.stack.borrow_mut().poll()
    }

    fn accept(&mut self) -> Option<Box<dyn Link>> {
        let mut st = self.stack.borrow_mut();
        let (h, echo) = st.take_connected()?;
        let remote = st.sockets.get::<tcp::Socket>(h).remote_endpoint();
        let name = match remote {
            Some(ep) => format!("tcp!{}!{}", ep.addr, ep.port),
            None => String::from("tcp!?"),
        };
        drop(st);
        Some(Box::new(TcpLink {
            stack: self.stack.clone(),
            handle: h,
            name,
            peer: remote.map(|ep| ep.addr.into()),
            echo,
            closed: false,
        }))
    }

    fn address(&self) -> Option<String> {
        TcpListener::address(self)
    }

    fn switch_status(&self) -> Option<String> {
        self.switch.as_ref().map(crate::switch::status)
    }
}

/// One accepted TCP connection.
pub struct TcpLink {
    stack: Rc<RefCell<Stack>>,
    handle: SocketHandle,
    name: String,
    /// The peer's address.
    peer: Option<IpAddr>,
    echo: bool,
    /// `Event::Closed` was reported.
    closed: bool,
}

impl TcpLink {
    fn with<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        let mut st = self.stack.borrow_mut();
        f(st.sockets.get_mut::<tcp::Socket>(self.handle))
    }
}

impl Link for TcpLink {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.with(|s| {
            if s.can_recv() {
                s.recv_slice(buf).unwrap_or(0)
            } else {
                0
            }
        })
    }

    fn send(&mut self, data: &[u8]) -> usize {
        self.with(|s| {
            if s.can_send() {
                s.send_slice(data).unwrap_or(0)
            } else if !s.may_send() {
                // The peer is gone: what is left has nowhere to go.
                data.len()
            } else {
                0
            }
        })
    }

    fn event(&mut self) -> Option<Event> {
        if self.closed {
            return None;
        }
        // Closed once the peer's FIN or RST arrived and every byte before it was read.
        let gone = self.with(|s| !s.may_recv() && s.recv_queue() == 0 || !s.is_active());
        self.closed = gone;
        gone.then_some(Event::Closed)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Stream
    }

    fn network(&self) -> bool {
        true
    }

    fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    fn echo(&self) -> bool {
        self.echo
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        // A link dropped before its peer closed was ended by us (a broken stream): reset.
        let abort = !self.closed;
        self.stack.borrow_mut().release(self.handle, abort);
    }
}

#[cfg(test)]
mod tests;
