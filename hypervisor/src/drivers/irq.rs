//! A PCI device's interrupt, as its driver sets it up: MSI-X or MSI where the device offers
//! it and the boot CPU's local APIC can take the message (`lapic::DEVICE_VECTOR`, fixed,
//! edge), else its INTx line on the PIC (`intx`), else none (the driver is polled on every
//! tick). A message needs no routing: the legacy line a modern board routes only in ACPI's
//! AML is then never used. Every kind only counts and wakes the idle loop; the driver
//! reads its device's cause register when the count moves.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::lapic;
use crate::arch::pci::Bdf;
use crate::drivers::{intx, msi, pcicap};

/// Every device interrupt taken so far, by line or by message (wrapping).
fn count() -> u32 {
    intx::count().wrapping_add(lapic::messages())
}

/// One driver's view of the interrupt count.
#[derive(Default)]
pub struct Seen(u32);

impl Seen {
    /// True once per change of the count: the driver should read its interrupt status
    /// (lowering an INTx line) and then unmask the lines ([`intx::unmask`]).
    pub fn take(&mut self) -> bool {
        let n = count();
        let new = n != self.0;
        self.0 = n;
        new
    }
}

/// The message-signalled kinds a driver can use, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MsiX,
    Msi,
}

/// How a device signals, once set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// MSI-X table entry 0, of the table's `entries`.
    MsiX {
        entries: u16,
    },
    Msi,
    /// The PIC line the firmware routed INTx to.
    Intx(u8),
    /// No interrupt: the tick polls.
    Polled,
}

impl fmt::Display for Mode {
    /// For the log: `msi-x vector 50 (entry 0 of 3)`, `msi vector 50`, `intx irq 11`, `no interrupt`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let v = lapic::DEVICE_VECTOR;
        match self {
            Mode::MsiX { entries } => write!(f, "msi-x vector {v} (entry 0 of {entries})"),
            Mode::Msi => write!(f, "msi vector {v}"),
            Mode::Intx(line) => write!(f, "intx irq {line}"),
            Mode::Polled => f.write_str("no interrupt (polled)"),
        }
    }
}

/// A device's interrupt and its driver's view of the count.
pub struct Interrupt {
    mode: Mode,
    seen: Seen,
}

impl Interrupt {
    /// Sets up `bdf`'s interrupt: the first of `kinds` the device offers (and the platform
    /// can take), else INTx. Enables the device's decoding and bus mastering. Call with
    /// interrupts off, before the device is started.
    pub fn setup(bdf: Bdf, kinds: &[Kind]) -> Interrupt {
        let mode = kinds
            .iter()
            .find_map(|&k| message(bdf, k))
            .unwrap_or_else(|| {
                bdf.enable(true);
                intx::register(bdf.interrupt_line()).map_or(Mode::Polled, Mode::Intx)
            });
        Interrupt {
            mode,
            seen: Seen::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// After an interrupt (once per change of the count): `quiet` reads the device's cause
    /// register, which clears its causes (and lowers INTx); then the lines are unmasked.
    pub fn service(&mut self, quiet: impl FnOnce()) {
        if self.seen.take() {
            quiet();
            match self.mode {
                Mode::Intx(_) => intx::unmask(),
                Mode::Msi | Mode::MsiX { .. } => first_message(),
                Mode::Polled => {}
            }
        }
    }
}

/// Says once that a device message arrived: a wrong address or vector would otherwise only
/// show as a NIC polled at the tick's rate.
fn first_message() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if lapic::messages() != 0 && !SAID.swap(true, Ordering::Relaxed) {
        log::info!(
            "irq: the first device message arrived on vector {}",
            lapic::DEVICE_VECTOR
        );
    }
}

/// Turns on message kind `kind` if `bdf` offers it and the boot CPU's APIC can be named.
fn message(bdf: Bdf, kind: Kind) -> Option<Mode> {
    let msg = msi::Message::to(lapic::message_target()?, lapic::DEVICE_VECTOR)?;
    match kind {
        Kind::MsiX => {
            let cap = pcicap::msix(&bdf)?;
            msi::enable_msix(bdf, &cap, msg)?;
            Some(Mode::MsiX {
                entries: cap.entries(),
            })
        }
        Kind::Msi => {
            msi::enable_msi(bdf, &pcicap::msi(&bdf)?, msg);
            Some(Mode::Msi)
        }
    }
}
