//! virtio-console's multiport control protocol (virtio 1.x, 5.3.6.2): the control messages
//! the driver and the device exchange on the control queues (receive queue 2, transmit
//! queue 3), the events they name, and which queue pair carries each port.
//!
//! A message is a header (port id u32, event u16, value u16, little-endian), followed for
//! PORT_NAME by the port's name. Decoding is total: a message shorter than a header, an
//! event the specification does not name, or a port id beyond those served is an
//! [`Error`], never a panic.

use core::fmt;

/// The control events (the specification's VIRTIO_CONSOLE_* names).
pub use virtio_spec::console::Device as Event;

/// Where `max_nr_ports` (u32) sits in the device configuration (cols u16, rows u16,
/// max_nr_ports u32, emerg_wr u32).
pub const CONFIG_MAX_NR_PORTS: u64 = 4;

/// The control queues: the driver receives on one and sends on the other.
pub const CONTROL_RX: u16 = 2;
pub const CONTROL_TX: u16 = 3;

/// Bytes of a control message's header.
pub const HEADER: usize = 8;

/// What a control message or a port id can be wrong with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The message has fewer bytes than a header.
    Truncated { len: usize },
    /// The header names no event the specification defines.
    UnknownEvent { event: u16 },
    /// The port id is not one of the `served` ports.
    NoSuchPort { id: u32, served: usize },
    /// The port id is beyond every queue index (16 bits).
    NoQueues { id: u32 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { len } => {
                write!(
                    f,
                    "control message of {len} bytes, short of a {HEADER}-byte header"
                )
            }
            Error::UnknownEvent { event } => write!(f, "unknown control event {event}"),
            Error::NoSuchPort { id, served } => {
                write!(f, "port {id} beyond the {served} served")
            }
            Error::NoQueues { id } => write!(f, "port {id} has no queues"),
        }
    }
}

/// A control message's header. `event` stays a number, so that a message with an
/// unknown event still decodes (its port id and value can be reported); [`Control::event`]
/// names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub id: u32,
    pub event: u16,
    pub value: u16,
}

impl Control {
    pub fn new(id: u32, event: Event, value: u16) -> Control {
        Control {
            id,
            event: event.into(),
            value,
        }
    }

    pub fn encode(self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[0..4].copy_from_slice(&self.id.to_le_bytes());
        b[4..6].copy_from_slice(&self.event.to_le_bytes());
        b[6..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    /// The header and the bytes after it.
    pub fn decode(b: &[u8]) -> Result<(Control, &[u8]), Error> {
        let Some((head, rest)) = b.split_first_chunk::<HEADER>() else {
            return Err(Error::Truncated { len: b.len() });
        };
        let [i0, i1, i2, i3, e0, e1, v0, v1] = *head;
        let control = Control {
            id: u32::from_le_bytes([i0, i1, i2, i3]),
            event: u16::from_le_bytes([e0, e1]),
            value: u16::from_le_bytes([v0, v1]),
        };
        Ok((control, rest))
    }

    /// The event, if the specification names it.
    pub fn event(self) -> Result<Event, Error> {
        Event::try_from(self.event).map_err(|_| Error::UnknownEvent { event: self.event })
    }

    /// The index of the port the message is about among `served` ports (ids 0..served).
    pub fn port(self, served: usize) -> Result<usize, Error> {
        usize::try_from(self.id)
            .ok()
            .filter(|&i| i < served)
            .ok_or(Error::NoSuchPort {
                id: self.id,
                served,
            })
    }
}

/// The name a PORT_NAME message carries after its header: its bytes up to the first NUL
/// (QEMU ends it with one; the specification does not), or all of them.
pub fn port_name(rest: &[u8]) -> &[u8] {
    rest.split(|&b| b == 0).next().unwrap_or(&[])
}

/// The queue indices (receive, transmit) of port `id`: port 0 uses 0 and 1, the control
/// queues are 2 and 3, port n > 0 uses 2n+2 and 2n+3.
pub fn queue_pair(id: u32) -> Result<(u16, u16), Error> {
    if id == 0 {
        return Ok((0, 1));
    }
    id.checked_mul(2)
        .and_then(|n| n.checked_add(2))
        .and_then(|rx| u16::try_from(rx).ok())
        .and_then(|rx| Some((rx, rx.checked_add(1)?)))
        .ok_or(Error::NoQueues { id })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn events_are_the_specifications() {
        let events = [
            (Event::DeviceReady, 0),
            (Event::DeviceAdd, 1),
            (Event::DeviceRemove, 2),
            (Event::PortReady, 3),
            (Event::ConsolePort, 4),
            (Event::Resize, 5),
            (Event::PortOpen, 6),
            (Event::PortName, 7),
        ];
        for (event, n) in events {
            assert_eq!(u16::from(event), n);
            let c = Control {
                id: 0,
                event: n,
                value: 0,
            };
            assert_eq!(c.event(), Ok(event));
        }
    }

    #[test]
    fn messages_round_trip() {
        let c = Control::new(5, Event::PortOpen, 1);
        let b = c.encode();
        assert_eq!(b, [5, 0, 0, 0, 6, 0, 1, 0]);
        assert_eq!(Control::decode(&b), Ok((c, &[][..])));
        let ready = Control::new(0, Event::DeviceReady, 1);
        assert_eq!(ready.encode(), [0, 0, 0, 0, 0, 0, 1, 0]);
        let big = Control::new(u32::MAX, Event::PortName, u16::MAX);
        assert_eq!(Control::decode(&big.encode()).map(|(c, _)| c), Ok(big));
    }

    #[test]
    fn a_port_name_follows_its_header() {
        let mut m = Control::new(1, Event::PortName, 1).encode().to_vec();
        m.extend_from_slice(b"9p.1\0junk");
        let (c, rest) = Control::decode(&m).unwrap();
        assert_eq!(c.event(), Ok(Event::PortName));
        assert_eq!(port_name(rest), b"9p.1");
        // Without a NUL: every byte; empty: empty.
        assert_eq!(port_name(b"console"), b"console");
        assert_eq!(port_name(b""), b"");
        assert_eq!(port_name(b"\0name"), b"");
    }

    #[test]
    fn truncated_messages_are_errors() {
        let b = Control::new(1, Event::PortOpen, 1).encode();
        for n in 0..HEADER {
            assert_eq!(Control::decode(&b[..n]), Err(Error::Truncated { len: n }));
        }
        assert_eq!(
            Error::Truncated { len: 3 }.to_string(),
            "control message of 3 bytes, short of a 8-byte header"
        );
    }

    #[test]
    fn unknown_events_are_errors() {
        for event in [8u16, 9, 0x100, u16::MAX] {
            let mut b = Control::new(2, Event::PortOpen, 1).encode();
            b[4..6].copy_from_slice(&event.to_le_bytes());
            // The header decodes, so its port can still be named; the event is refused.
            let (c, _) = Control::decode(&b).unwrap();
            assert_eq!(c.id, 2);
            assert_eq!(c.event(), Err(Error::UnknownEvent { event }));
        }
        assert_eq!(
            Error::UnknownEvent { event: 9 }.to_string(),
            "unknown control event 9"
        );
    }

    #[test]
    fn out_of_range_ports_are_errors() {
        let c = |id| Control::new(id, Event::DeviceAdd, 0);
        assert_eq!(c(0).port(1), Ok(0));
        assert_eq!(c(31).port(32), Ok(31));
        assert_eq!(
            c(32).port(32),
            Err(Error::NoSuchPort { id: 32, served: 32 })
        );
        assert_eq!(c(0).port(0), Err(Error::NoSuchPort { id: 0, served: 0 }));
        assert_eq!(
            c(u32::MAX).port(usize::MAX),
            Ok(u32::MAX as usize),
            "every u32 is an index on a 64-bit host"
        );
        assert_eq!(
            c(u32::MAX).port(32).unwrap_err().to_string(),
            "port 4294967295 beyond the 32 served"
        );
    }

    #[test]
    fn queue_pairs_skip_the_control_queues() {
        assert_eq!(queue_pair(0), Ok((0, 1)));
        assert_eq!(queue_pair(1), Ok((4, 5)));
        assert_eq!(queue_pair(31), Ok((64, 65)));
        // The last port whose pair fits 16-bit queue indices, and the ones past it.
        assert_eq!(queue_pair(32765), Ok((65532, 65533)));
        assert_eq!(queue_pair(32766), Ok((65534, 65535)));
        for id in [32767, 32768, 0x8000_0000, u32::MAX] {
            assert_eq!(queue_pair(id), Err(Error::NoQueues { id }), "{id}");
        }
        for id in 1..2000 {
            let (rx, tx) = queue_pair(id).unwrap();
            assert!(rx > CONTROL_TX && tx == rx + 1);
        }
    }

    #[test]
    fn any_bytes_decode_without_panicking() {
        // Every prefix of a set of awkward messages, and a simple byte sweep.
        let mut b = [0u8; 16];
        for seed in 0u32..4096 {
            for (i, x) in b.iter_mut().enumerate() {
                *x = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32 * 3) >> 7) as u8;
            }
            for n in 0..=b.len() {
                match Control::decode(&b[..n]) {
                    Ok((c, rest)) => {
                        assert!(n >= HEADER && rest.len() == n - HEADER);
                        let _ = c.event();
                        let _ = c.port(32);
                        let _ = queue_pair(c.id);
                        let _ = port_name(rest);
                    }
                    Err(e) => assert_eq!(e, Error::Truncated { len: n }),
                }
            }
        }
    }
}
