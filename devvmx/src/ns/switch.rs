//! The host switch's files (an extension, DEVIATIONS.md): `switch/clone`, there when the
//! host runs a switch (walkable, not listed in the root). Opening it (the owner only) adds a `client` port to the switch and
//! turns the fid into that port's queue file, whose text is `netswitch::qfile`'s: a read
//! returns the whole frames queued for the port that fit its count (`frame N\n` and N
//! bytes each) and waits while none is queued; a write delivers whole frames, all or
//! none. Offsets are ignored (a stream). The port leaves with the fid's clunk.

use super::Namespace;
use crate::hw::Hw;
use alloc::string::ToString;
use alloc::sync::Arc;
use netswitch::{qfile, Kind, PortId};
use ninep::{Error, Read};

/// The host's switch, shared with its other ports' owners.
pub type SharedSwitch = Arc<spin::Mutex<netswitch::Switch>>;

/// What the host hands over: its switch and the switch's clock (milliseconds).
#[derive(Clone)]
pub struct HostSwitch {
    pub switch: SharedSwitch,
    pub millis: fn() -> u64,
}

impl HostSwitch {
    /// A switch of no ports yet on clock `millis`: where the VMs' cards meet when no NIC
    /// is bridged (guest to guest only).
    pub fn unbridged(millis: fn() -> u64) -> HostSwitch {
        HostSwitch {
            switch: Arc::new(spin::Mutex::new(netswitch::Switch::new(
                netswitch::Config::default(),
            ))),
            millis,
        }
    }
}

fn err(e: impl ToString) -> Error {
    Error::from(e.to_string())
}

impl<H: Hw> Namespace<H> {
    /// Serves `switch/` on this switch.
    pub fn set_switch(&mut self, s: HostSwitch) {
        self.switch = Some(s);
    }

    /// The switch the host handed over, if it did.
    pub fn switch(&self) -> Option<&HostSwitch> {
        self.switch.as_ref()
    }

    fn host_switch(&self) -> Result<&HostSwitch, Error> {
        self.switch
            .as_ref()
            .ok_or_else(|| err(qfile::Error::NoPort))
    }

    /// A new client port, for an open of `switch/clone`.
    pub(super) fn open_port(&mut self) -> Result<u16, Error> {
        let s = self.host_switch()?;
        let p = s.switch.lock().add(Kind::Client, None).map_err(err)?;
        Ok(p.0)
    }

    pub(super) fn port_exists(&self, port: u16) -> bool {
        self.switch
            .as_ref()
            .is_some_and(|s| s.switch.lock().kind(PortId(port)).is_some())
    }

    pub(super) fn read_port(&mut self, port: u16, buf: &mut [u8]) -> Result<Read, Error> {
        let s = self.host_switch()?;
        let b = qfile::read(&mut s.switch.lock(), PortId(port), buf.len()).map_err(err)?;
        if b.is_empty() {
            return Ok(Read::Pending);
        }
        buf[..b.len()].copy_from_slice(&b);
        Ok(Read::Done(b.len()))
    }

    pub(super) fn write_port(&mut self, port: u16, data: &[u8]) -> Result<usize, Error> {
        let s = self.host_switch()?;
        let now = (s.millis)();
        qfile::write(&mut s.switch.lock(), PortId(port), data, now).map_err(err)?;
        Ok(data.len())
    }

    /// The port's fid is gone: so is the port.
    pub(super) fn close_port(&mut self, port: u16) {
        if let Some(s) = &self.switch {
            let _ = s.switch.lock().remove(PortId(port));
        }
    }
}
