//! The tool's virtio-net device against a real peer, without Bochs: a QEMU VM (Debian's
//! kernel on `vmx/mkroot`'s disk, TCG) listens with `-netdev stream` on a unix socket,
//! the device connects through `-n`'s link code, and this test plays the guest driver
//! (rings in a byte array): an ARP request goes out through the transmit queue, and
//! QEMU's Linux answers into a receive buffer. Frames cross in both directions in
//! QEMU's stream framing. Nothing leaves the unix socket.

use std::sync::mpsc::channel;
use std::time::{Duration, Instant};
use vmx::virtio::net::{Net, HDR};
use vmx::virtio::testing::{Driver, Ram};
use vmx::virtio::{Device, Kind, QUEUE_SIZE};

const OURS: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const PEER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const OUR_IP: [u8; 4] = [10, 0, 0, 1];
const PEER_IP: [u8; 4] = [10, 0, 0, 2];

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&OUR_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&PEER_IP);
    f.resize(60, 0);
    f
}

/// An ARP reply from the peer to us, if `f` is one.
fn is_arp_reply(f: &[u8]) -> bool {
    f.len() >= 42
        && f[0..6] == OURS
        && f[12..14] == [0x08, 0x06]
        && f[20..22] == [0, 2]
        && f[22..28] == PEER
        && f[28..32] == PEER_IP
}

#[test]
fn arp_with_a_qemu_vm_over_a_stream_socket() {
    let dir = std::env::temp_dir().join(format!("vmx-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut peer, link, mut frames) = vmx::testdata::QemuPeer::start(&dir);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        while let Ok(Some(f)) = frames() {
            if tx.send(f).is_err() {
                return;
            }
        }
    });

    let mut dev = Device::new(Kind::Net(Net::new(OURS, link)), 11);
    let mut ram = Ram::new(1 << 20);
    let lim = 1 << 20;
    for (q, pfn) in [(0, 16), (1, 32)] {
        dev.write(0x0e, 2, q, &mut ram, lim);
        dev.write(0x08, 4, pfn, &mut ram, lim);
    }
    dev.write(0x12, 1, 7, &mut ram, lim);
    let mut rxq = Driver::new(QUEUE_SIZE, 16);
    let mut txq = Driver::new(QUEUE_SIZE, 32);
    for k in 0..8u64 {
        rxq.offer(&mut ram, &[(0x40000 + k * 0x1000, 1526, true)]);
    }
    dev.write(0x10, 2, 0, &mut ram, lim);

    peer.up("10.0.0.2/24");

    let req = arp_request();
    let mut seen = 0u16;
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
            // Header (all zeros: no offloads) then the frame, in one buffer.
            let mut b = vec![0u8; HDR];
            b.extend_from_slice(&req);
            ram.b[0x8000..0x8000 + b.len()].copy_from_slice(&b);
            txq.offer(&mut ram, &[(0x8000, b.len() as u32, false)]);
            assert_eq!(dev.write(0x10, 2, 1, &mut ram, lim), None);
            sent += 1;
            last_sent = Some(Instant::now());
        }
        if let Ok(f) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Kind::Net(n) = &mut dev.kind {
                n.receive(f);
            }
            assert_eq!(dev.notify(0, &mut ram, lim), None);
        }
        let mut got = false;
        while seen != rxq.used_idx(&ram) {
            let (head, len) = rxq.used_entry(&ram, seen);
            let a = 0x40000 + 0x1000 * head as usize;
            assert_eq!(ram.b[a..a + HDR], [0; HDR]);
            got |= is_arp_reply(&ram.b[a + HDR..a + len as usize]);
            // The buffer goes back to the device.
            rxq.publish(&mut ram, head as u16);
            seen = seen.wrapping_add(1);
        }
        if got {
            break;
        }
    }
    assert!(txq.used_idx(&ram) >= 1);
    assert!(dev.line(), "the device raised its interrupt line");
    let _ = std::fs::remove_dir_all(&dir);
}
