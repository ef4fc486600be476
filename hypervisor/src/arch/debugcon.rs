//! Port 0xE9: Bochs's port_e9_hack and QEMU's -debugcon. The log channel, never the 9P line.

pub fn write(bytes: &[u8]) {
    for &b in bytes {
        super::port::DEBUGCON.write8(0, b);
    }
}
