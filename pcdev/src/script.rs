//! Guest port sequences with the values their `in`s must read: one table that every
//! runner of the devices replays (the board here, the vmx tool's machine, the kernel's
//! in-kernel devices through devvmx over its test double), so the tool and the kernel
//! are held to the same answers.

/// One step of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `out` of size 1, 2 or 4 bytes.
    Out(u16, u8, u32),
    /// `in` of size bytes: the next value of the script's `reads`.
    In(u16, u8),
    /// The guest runs this many nanoseconds.
    Run(u64),
}

use Op::*;

pub struct Script {
    pub name: &'static str,
    pub ops: &'static [Op],
    /// What the `in`s read, in order.
    pub reads: &'static [u32],
}

/// Every runner starts at guest time 0 with the RTC's clock at the Unix epoch, and
/// the devices `pic pit uart rtc kbd quiet com2` answering.
pub const SCRIPTS: &[Script] = &[
    Script {
        name: "pic: initialise, mask, read IMR, IRR, ISR, ELCR",
        ops: &[
            Out(0x20, 1, 0x11),
            Out(0xa0, 1, 0x11),
            Out(0x21, 1, 0x20),
            Out(0xa1, 1, 0x28),
            Out(0x21, 1, 4),
            Out(0xa1, 1, 2),
            Out(0x21, 1, 1),
            Out(0xa1, 1, 1),
            Out(0x21, 1, 0xfb),
            In(0x21, 1),
            In(0x20, 1),
            Out(0x20, 1, 0x0b),
            In(0x20, 1),
            Out(0x4d1, 1, 0xff),
            In(0x4d1, 1),
            In(0x4d0, 1),
        ],
        reads: &[0xfb, 0, 0, 0xde, 0],
    },
    Script {
        name: "pit: Linux's calibration on channel 2 through port 0x61",
        ops: &[
            Out(0x61, 1, 0x01),
            Out(0x43, 1, 0xb0),
            Out(0x42, 1, 0xff),
            Out(0x42, 1, 0xff),
            In(0x61, 1),
            Run(60_000_000),
            In(0x61, 1),
        ],
        reads: &[0x11, 0x21],
    },
    Script {
        name: "pit: latch channel 0 after a millisecond",
        ops: &[
            Out(0x43, 1, 0x34),
            Out(0x40, 1, 0x00),
            Out(0x40, 1, 0x10),
            Run(1_000_000),
            Out(0x43, 1, 0x00),
            Run(5_000_000),
            In(0x40, 1),
            In(0x40, 1),
        ],
        reads: &[0x57, 0x0b],
    },
    Script {
        name: "uart: divisor, line control, FIFO, scratch, status",
        ops: &[
            Out(0x3fb, 1, 0x80),
            Out(0x3f8, 1, 0x0c),
            Out(0x3f9, 1, 0x00),
            In(0x3f8, 1),
            Out(0x3fb, 1, 0x03),
            In(0x3fb, 1),
            In(0x3fd, 1),
            Out(0x3ff, 1, 0x5a),
            In(0x3ff, 1),
            Out(0x3fa, 1, 0xc7),
            In(0x3fa, 1),
            In(0x3fe, 1),
        ],
        reads: &[0x0c, 0x03, 0x60, 0x5a, 0xc1, 0xb0],
    },
    Script {
        name: "rtc: status registers and the date at the epoch",
        ops: &[
            Out(0x70, 1, 0x0b),
            In(0x71, 1),
            Out(0x70, 1, 0x0d),
            In(0x71, 1),
            Out(0x70, 1, 0x8a),
            In(0x71, 1),
            Out(0x70, 1, 0x09),
            In(0x71, 1),
            Out(0x70, 1, 0x32),
            In(0x71, 1),
            Run(3_000_000_000),
            Out(0x70, 1, 0x00),
            In(0x71, 1),
        ],
        reads: &[0x02, 0x80, 0x26, 0x70, 0x19, 0x03],
    },
    Script {
        name: "kbd: controller self-test and configuration byte",
        ops: &[
            Out(0x64, 1, 0xaa),
            In(0x64, 1),
            In(0x60, 1),
            Out(0x64, 1, 0x20),
            In(0x60, 1),
            In(0x64, 1),
        ],
        reads: &[0x05, 0x55, 0x45, 0x04],
    },
    Script {
        // drivers/tty/serial/8250: autoconfig() of a legacy port (UPF_SKIP_TEST: no
        // loopback test) finding a 16550A, then uart_configure_port()'s set_mctrl: the
        // 21 accesses a Linux boot makes to COM2. Then the scratch register, and a byte
        // sent to nobody (the transmitter is empty again at once).
        name: "com2: Linux's 8250 probe, scratch, a byte sent",
        ops: &[
            In(0x2f9, 1),
            Out(0x2f9, 1, 0x00),
            In(0x2f9, 1),
            Out(0x2f9, 1, 0x0f),
            In(0x2f9, 1),
            Out(0x2f9, 1, 0x00),
            In(0x2fc, 1),
            In(0x2fb, 1),
            Out(0x2fb, 1, 0xbf),
            Out(0x2fa, 1, 0x00),
            Out(0x2fb, 1, 0x00),
            Out(0x2fa, 1, 0x01),
            In(0x2fa, 1),
            Out(0x2fb, 1, 0x00),
            Out(0x2fc, 1, 0x00),
            Out(0x2fa, 1, 0x01),
            Out(0x2fa, 1, 0x07),
            Out(0x2fa, 1, 0x00),
            In(0x2f8, 1),
            Out(0x2f9, 1, 0x00),
            Out(0x2fc, 1, 0x00),
            Out(0x2ff, 1, 0x5a),
            In(0x2ff, 1),
            Out(0x2f8, 1, 0x78),
            In(0x2fd, 1),
        ],
        reads: &[0, 0, 0x0f, 0, 0, 0xc1, 0, 0x5a, 0x60],
    },
    Script {
        name: "quiet ports and access sizes",
        ops: &[In(0x80, 1), In(0x84, 2), Out(0x80, 1, 0x55), In(0xed, 4)],
        reads: &[0xff, 0xffff, 0xffff_ffff],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{lookup, rtc::Rtc, Board};
    use alloc::vec::Vec;

    #[test]
    fn the_board_reads_what_the_scripts_say() {
        for s in SCRIPTS {
            let mut b = Board::new(Rtc::new(0, 0, 0), 0);
            let mut now = 0u64;
            let mut reads = Vec::new();
            for op in s.ops {
                let wall = (now / 1_000_000_000) as i64;
                match *op {
                    Out(p, n, v) => {
                        b.advance(now);
                        b.io_out(lookup(p).unwrap(), p, n, v, now, wall);
                    }
                    In(p, n) => {
                        b.advance(now);
                        reads.push(b.io_in(lookup(p).unwrap(), p, n, now, wall));
                    }
                    Run(ns) => now += ns,
                }
            }
            assert_eq!(reads, s.reads, "{}", s.name);
        }
    }
}
