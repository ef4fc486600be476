//! A VM's in-kernel cards through its `net` file (kdev/net.rs).

use super::Vm;
use crate::kdev::KDev;
use ninep::Error;

/// A VM's `net` file when it has no in-kernel card.
pub(crate) const ENONET: &str = "no in-kernel cards";

impl Vm {
    /// Its in-kernel devices, if it has a card among them.
    pub(crate) fn nets(&mut self) -> Result<&mut KDev, Error> {
        self.kdev
            .as_deref_mut()
            .filter(|k| k.has_nets())
            .ok_or(Error::from(ENONET))
    }
}
