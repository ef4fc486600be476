//! The tool's virtio-net device against a real peer, without Bochs: a QEMU VM (Debian's
//! kernel on `vmx/mkroot`'s disk, TCG) listens with `-netdev stream` on a unix socket,
//! the device connects through `-n`'s link code, and this test plays the guest driver
//! (rings in a byte array): an ARP request goes out through the transmit queue, and
//! QEMU's Linux answers into a receive buffer. Frames cross in both directions in
//! QEMU's stream framing. Nothing leaves the unix socket.

use std::time::{Duration, Instant};
use vmm_tests::fixtures::{ether, NicDriver};

const OURS: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const PEER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const OUR_IP: [u8; 4] = [10, 0, 0, 1];
const PEER_IP: [u8; 4] = [10, 0, 0, 2];

#[test]
fn arp_with_a_qemu_vm_over_a_stream_socket() {
    let dir = vmm_tests::fixtures::scratch("vmx-net");
    let (mut peer, link, frames) = vmm_tests::fixtures::QemuPeer::start(&dir);
    let mut nic = NicDriver::new(OURS, link, frames);
    peer.up("10.0.0.2/24");

    let req = ether::arp_request(OURS, OUR_IP, PEER_IP);
    let mut sent = 0;
    let t0 = Instant::now();
    let mut last_sent = None::<Instant>;
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no ARP reply from the QEMU VM after {sent} requests\n{}",
            peer.text()
        );
        if last_sent.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
            nic.send(&req);
            sent += 1;
            last_sent = Some(Instant::now());
        }
        let got = nic.receive(Duration::from_millis(200));
        if got
            .iter()
            .any(|f| ether::arp_reply(f, OURS, PEER_IP) == Some(PEER))
        {
            break;
        }
    }
    assert!(nic.transmitted() >= 1);
    assert!(nic.dev.line(), "the device raised its interrupt line");
    let _ = std::fs::remove_dir_all(&dir);
}
