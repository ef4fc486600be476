//! The test guests of guests/, assembled by build.rs: flat images loaded at [`LOAD`].

/// Guest-physical address every image is linked at and entered at.
pub const LOAD: u64 = 0x1000;

pub const REALMODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/realmode.bin"));
pub const MEMORY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/memory.bin"));
pub const EVENTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/events.bin"));
pub const STEP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/step.bin"));
pub const TRIPLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/triple.bin"));
pub const LONG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/long.bin"));
/// The exit benchmark's loop (bench-exits): ebx `loop`s, then out 0x80, again.
pub const BENCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bench.bin"));
/// In-kernel devices under load: the PIT at its fastest for 1000 interrupts, COM2
/// probed ([`HAMMER_COM2`]), then COM1 written forever; counters at [`HAMMER_TICKS`] and
/// [`HAMMER_BYTES`].
pub const HAMMER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hammer.bin"));
pub const HAMMER_TICKS: u64 = 0x1200;
/// Counts forever with interrupts off: a 32-bit counter at [`COUNTER`].
pub const COUNT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/count.bin"));
pub const COUNTER: u64 = 0x1200;
pub const HAMMER_BYTES: u64 = 0x1204;
/// What the hammer guest read back from COM2's IER (0x0f written) and scratch register
/// (0x5a written), a byte each.
pub const HAMMER_COM2: u64 = 0x1208;
/// Two guests' in-kernel virtio-net cards (`pci net`): role 1 at [`PINGPONG_ROLE`] pings
/// [`PINGPONG_PINGS`] times (polling), any other echoes (halted between frames, woken by
/// the card's interrupt); each counts at [`PINGPONG_DONE`].
pub const PINGPONG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pingpong.bin"));
pub const PINGPONG_ROLE: u64 = 0x6000;
pub const PINGPONG_PINGS: u64 = 0x6004;
pub const PINGPONG_DONE: u64 = 0x6008;
/// A guest flooding its in-kernel virtio-net card: its transmit ring refilled and
/// notified forever (a broadcast, a unicast to nobody and a unicast to the MAC at
/// [`NETFLOOD_PEER`]), its rounds counted at [`NETFLOOD_ROUNDS`]; it never offers a
/// receive buffer.
pub const NETFLOOD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/netflood.bin"));
pub const NETFLOOD_PEER: u64 = 0x6000;
pub const NETFLOOD_ROUNDS: u64 = 0x6008;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_built() {
        // mov ax, 0x1234 (real mode), mov eax, [0x200000], lgdt, ...: each starts where
        // the tests expect.
        assert_eq!(&REALMODE[..3], &[0xb8, 0x34, 0x12]);
        assert_eq!(&MEMORY[..5], &[0xa1, 0x00, 0x00, 0x20, 0x00]);
        assert_eq!(&EVENTS[..3], &[0x0f, 0x01, 0x15]);
        assert_eq!(STEP[0], 0x90);
        assert_eq!(&LONG[..2], &[0x48, 0xb8]);
        assert!(TRIPLE.len() < 32);
        assert_eq!(HAMMER.len() as u64, HAMMER_COM2 + 4 - LOAD);
        // cli; inc dword [0x1200]; jmp back to the inc.
        assert_eq!(
            COUNT,
            &[0xfa, 0xff, 0x05, 0x00, 0x12, 0x00, 0x00, 0xeb, 0xf8]
        );
        // mov ecx, ebx; jecxz; loop; out 0x80, al; jmp _start.
        assert_eq!(
            BENCH,
            &[0x89, 0xd9, 0xe3, 0x02, 0xe2, 0xfe, 0xe6, 0x80, 0xeb, 0xf6]
        );
    }
}
