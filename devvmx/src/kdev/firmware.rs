//! A firmware machine (`firmware MEM` on `ctl`, an extension, see DEVIATIONS.md): the
//! in-kernel devices made enough of a PC for a BIOS (SeaBIOS) whose client is no program
//! at all, only a shell writing files. The CMOS tells the RAM size as a BIOS reads it
//! without fw_cfg; system control port A (0x92) shows A20 on; QEMU's firmware debug port
//! (0x402) is there and what the firmware writes to it joins COM1's output in `cons`
//! (SeaBIOS without fw_cfg has no serial console, and its log and screen output go to
//! that port); and every other port that neither an in-kernel device nor a client's PCI
//! function answers is no device (reads all ones, writes dropped), as on a PC, where the
//! client would otherwise have to answer each probe. Resets (port A's fast-reset bit,
//! besides the i8042's and 0xcf9's) still reach the client as their `io` exits, and such
//! a stop also ends a `cons` read that was waiting, so a shell's `cat cons` ends there.

use super::{KDev, RTC, UART};
use crate::plan9::{strtoull_whole, EBADARG};
use alloc::string::String;
use ninep::Error;
use pcdev::{FW_DEBUG_PORT, FW_DEBUG_READBACK, PORT_A, PORT_A_A20, PORT_A_RESET};

/// The least RAM a firmware machine may have: 1 MiB, the BIOS areas and the ROM's copy.
pub const MEM_MIN: u64 = 1 << 20;
/// The most: below 4 GiB, where the ROM is (the CMOS has no room for more below it).
pub const MEM_MAX: u64 = 0xffff_ffff;

/// How a firmware machine takes a port access no device claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FwPort {
    /// Answered here: the value an `in` reads.
    Value(u32),
    /// A reset through port A: the client's to see, as its exit.
    Reset,
}

/// Parses the arguments of `firmware MEM`: the RAM size in bytes (C notation).
pub(crate) fn parse(args: &[String]) -> Result<u64, Error> {
    let [mem] = args else {
        return Err(EBADARG.into());
    };
    strtoull_whole(mem)
        .filter(|m| (MEM_MIN..=MEM_MAX).contains(m))
        .ok_or_else(|| EBADARG.into())
}

impl KDev {
    /// The `firmware MEM` message: the RAM size in the CMOS (needs `rtc`), and the
    /// ports a firmware machine answers from now on.
    pub(crate) fn firmware(&mut self, args: &[String]) -> Result<(), Error> {
        if !self.has(RTC) {
            return Err("no in-kernel rtc".into());
        }
        let mem = parse(args)?;
        self.board.rtc.set_ram(mem, 0);
        self.firmware = true;
        Ok(())
    }

    /// A firmware machine: its client is a shell, so a stop for the client also answers
    /// a `cons` read that waited (with 0 bytes, the end of file, when nothing is queued).
    pub(crate) fn is_firmware(&self) -> bool {
        self.firmware
    }

    /// A port access at guest time `now` that no in-kernel device claimed: on a
    /// firmware machine, how it is taken; None elsewhere (the client's, as before).
    pub(crate) fn firmware_io(
        &mut self,
        port: u16,
        size: u8,
        input: bool,
        val: u32,
        now: u64,
    ) -> Option<FwPort> {
        if !self.firmware {
            return None;
        }
        let answer = match port {
            PORT_A if input => FwPort::Value(PORT_A_A20),
            PORT_A if val & PORT_A_RESET != 0 => return Some(FwPort::Reset),
            FW_DEBUG_PORT if input => FwPort::Value(FW_DEBUG_READBACK),
            FW_DEBUG_PORT => {
                if self.has(UART) {
                    let bytes = val.to_le_bytes();
                    let n = usize::from(size).min(bytes.len());
                    if self.board.com[0].append(&bytes[..n]) > 0 {
                        self.batch.queued(now);
                    }
                }
                FwPort::Value(0)
            }
            _ if input => FwPort::Value(pcdev::size_mask(size)),
            _ => FwPort::Value(0),
        };
        self.counts.io += 1;
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kdev::{CONS_LIMIT, PIC};
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(|w| w.to_string()).collect()
    }

    fn kdev(devices: &str) -> KDev {
        KDev::new(super::super::parse(&words(devices)).unwrap())
    }

    fn cmos(k: &mut KDev, reg: u8) -> u8 {
        k.board.rtc.write(0x70, reg, 0);
        k.board.rtc.read(0x71, 0)
    }

    #[test]
    fn sizes() {
        let p = |s: &str| parse(&words(s)).map_err(|e| String::from(e.as_str()));
        assert_eq!(p("0x1000000"), Ok(16 << 20));
        assert_eq!(p("1048576"), Ok(MEM_MIN));
        for bad in ["", "16M", "0x1000 0x1000", "0xfffff", "0x100000000", "-1"] {
            assert_eq!(p(bad), Err(EBADARG.into()), "{bad:?}");
        }
    }

    #[test]
    fn the_cmos_tells_the_ram() {
        let mut k = kdev("pic uart rtc");
        k.firmware(&words("0x4000000")).unwrap();
        // KiB above 1 MiB up to 64 MiB, 64 KiB units above 16 MiB.
        let ext = u16::from(cmos(&mut k, 0x30)) | u16::from(cmos(&mut k, 0x31)) << 8;
        assert_eq!(ext, 63 << 10);
        let above = u16::from(cmos(&mut k, 0x34)) | u16::from(cmos(&mut k, 0x35)) << 8;
        assert_eq!(above, 48 << 4);
        let e = kdev("pic").firmware(&words("0x4000000")).unwrap_err();
        assert_eq!(e.as_str(), "no in-kernel rtc");
    }

    #[test]
    fn ports_on_a_firmware_machine() {
        let mut k = kdev("pic uart rtc");
        assert_eq!(k.firmware_io(0x2f8, 1, true, 0, 0), None, "not yet one");
        k.firmware(&words("0x1000000")).unwrap();
        assert_eq!(k.firmware_io(PORT_A, 1, true, 0, 0), Some(FwPort::Value(2)));
        assert_eq!(
            k.firmware_io(PORT_A, 1, false, 2, 0),
            Some(FwPort::Value(0))
        );
        assert_eq!(k.firmware_io(PORT_A, 1, false, 3, 0), Some(FwPort::Reset));
        assert_eq!(
            k.firmware_io(FW_DEBUG_PORT, 1, true, 0, 0),
            Some(FwPort::Value(0xe9))
        );
        for b in b"hi\n" {
            k.firmware_io(FW_DEBUG_PORT, 1, false, u32::from(*b), 0);
        }
        let mut buf = [0u8; 8];
        assert_eq!(k.cons_take(&mut buf, false, 0), Some(3));
        assert_eq!(&buf[..3], b"hi\n");
        // Nothing else there: COM2, the done port, anything.
        assert_eq!(
            k.firmware_io(0x2f8, 1, true, 0, 0),
            Some(FwPort::Value(0xff))
        );
        assert_eq!(
            k.firmware_io(0xf4, 2, true, 0, 0),
            Some(FwPort::Value(0xffff))
        );
        assert_eq!(
            k.firmware_io(0x1234, 4, false, 7, 0),
            Some(FwPort::Value(0))
        );
        // A full console drops the log rather than hold the guest.
        for _ in 0..CONS_LIMIT + 10 {
            k.firmware_io(FW_DEBUG_PORT, 1, false, u32::from(b'x'), 0);
        }
        assert_eq!(k.board.com[0].tx.len(), CONS_LIMIT);
        assert!(k.has(PIC));
    }
}
