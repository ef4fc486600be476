//! The vmx tool's `-n` links through the kernel's switch (vmx::knet), against the real #X
//! device logic on the host (devvmx over TestHw, served by the ninep engine on a socket
//! pair, its switch unbridged): which frames cross a link's client port, and where the
//! tool falls back to its own card.

mod devvmx_host;

use devvmx::testhw::TestHw;
use devvmx_host::*;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use vmx::layout::Layout;
use vmx::run::Outcome;
use vmx::session;

/// The card of a `-n` link in these tests, and another VM's on the same switch.
const LINK_CARD: [u8; 6] = [2, 0, 0, 0, 0, 0x1c];
const OTHER_CARD: [u8; 6] = [2, 0, 0, 0, 0, 0x2c];
/// A host behind the link.
const FAR: [u8; 6] = [2, 0, 0, 0, 0, 0x3c];

/// An Ethernet frame from `src` to `dst`, its payload byte `tag`.
fn ether(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// A link card on one end of a socket pair (QEMU's stream framing, as `-n unix!`), the
/// other end returned for the test to play the peer.
fn link_card() -> (vmx::knet::Card, UnixStream) {
    use vmx::virtio::net::{read_frame, Stream};
    let (mine, peer) = UnixStream::pair().unwrap();
    let mut r = mine.try_clone().unwrap();
    let card = vmx::knet::Card {
        mac: LINK_CARD,
        link: Box::new(Stream(mine)),
        source: Box::new(move || read_frame(&mut r)),
        name: "unix!/peer".into(),
    };
    (card, peer)
}

/// The port of `sw` with this kind and address.
fn port_of(
    sw: &netswitch::Switch,
    kind: netswitch::Kind,
    mac: Option<[u8; 6]>,
) -> netswitch::PortId {
    (0..64)
        .map(netswitch::PortId)
        .find(|p| sw.kind(*p) == Some((kind, mac.map(netswitch::Mac))))
        .unwrap_or_else(|| panic!("no {kind:?} port {mac:02x?}: {}", sw.status()))
}

/// `-n` links through the kernel's switch (vmx::knet): the card is the kernel's (`pci
/// net`), the link's frames cross a client port (`switch/clone`) pumped by the tool. A
/// broadcast from the card reaches the link and the other VM's card; a unicast to the
/// other card never crosses the port; the peer's frame reaches the card, and its
/// address, learned behind the port, draws the card's unicast to it through the link.
/// The pumps' reads and writes are counted, and their end takes the port off the switch.
#[test]
fn a_links_card_is_the_kernels_and_only_the_links_frames_cross_its_port() {
    use vmx::virtio::net::{read_frame, Link, Stream};
    let (ns, _server, client, _) = connect(TestHw::new(4096));
    ns.lock()
        .unwrap()
        .set_switch(devvmx::HostSwitch::unbridged(|| 0));
    let sw = ns.lock().unwrap().switch().unwrap().switch.clone();
    let other = sw
        .lock()
        .add(netswitch::Kind::Guest, Some(netswitch::Mac(OTHER_CARD)))
        .unwrap();
    let layout = Layout::new(4 << 20).unwrap();
    let mut vm = vmx::vmfs::NinepVm::create(
        client.clone(),
        "vm.link",
        layout.segment_size(),
        &layout.map_text("vm.link"),
    )
    .unwrap();
    use vmx::vmfs::Vmfs;
    vm.ctl("devices pic pci").unwrap();
    let (card, mut peer) = link_card();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let ports = vmx::knet::Ports::open(&mut vm, &client, true, 1).unwrap();
    let (tx, _events) = std::sync::mpsc::channel();
    let pumps = ports.attach(&mut vm, vec![card], tx).unwrap();
    let (card, link) = {
        let s = sw.lock();
        (
            port_of(&s, netswitch::Kind::Guest, Some(LINK_CARD)),
            port_of(&s, netswitch::Kind::Client, None),
        )
    };
    // The guest's frames: one for the other VM only, then a broadcast.
    sw.lock()
        .input(card, &ether(OTHER_CARD, LINK_CARD, 1), 0)
        .unwrap();
    sw.lock()
        .input(card, &ether([0xff; 6], LINK_CARD, 2), 0)
        .unwrap();
    let got = read_frame(&mut peer).unwrap().unwrap();
    assert_eq!(
        got,
        ether([0xff; 6], LINK_CARD, 2),
        "the unicast crossed the link"
    );
    assert_eq!(sw.lock().queued(other), 2);
    // The peer's frame for the card, and the card's answer to the peer's address.
    Stream(peer.try_clone().unwrap())
        .send(&ether(LINK_CARD, FAR, 3))
        .unwrap();
    let start = std::time::Instant::now();
    while sw.lock().queued(card) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            sw.lock().status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sw.lock().pop(card), Some(ether(LINK_CARD, FAR, 3)));
    sw.lock().input(card, &ether(FAR, LINK_CARD, 4), 0).unwrap();
    assert_eq!(
        read_frame(&mut peer).unwrap().unwrap(),
        ether(FAR, LINK_CARD, 4)
    );
    assert_eq!(
        sw.lock().queued(other),
        2,
        "unicast to the link reached another card"
    );
    let c = pumps.finish();
    assert_eq!((c.to_links, c.from_links, c.dropped), (2, 1, 0), "{c:?}");
    // A read per frame batch and the one still out, the one write.
    assert!((4..=5).contains(&c.trips), "{c:?}");
    assert!(sw.lock().kind(link).is_none(), "{}", sw.lock().status());
    vm.close().unwrap();
}

/// Through a whole run: the links' cards are the kernel's where it has the in-kernel
/// PCI bus and switch, and the tool's own without (as against 9front's #X), said so.
#[test]
fn links_are_the_kernels_cards_where_it_has_them() {
    let (card, _peer) = link_card();
    let devices = session::Devices {
        links: vec![card],
        ..Default::default()
    };
    let (ns, report, _, log) = run_with(true, script(), devices);
    assert_eq!(report.outcome, Ok(Outcome::Halted { pc: 0x1006 }), "{log}");
    assert!(
        log.contains("the hypervisor's virtio-net on its switch"),
        "{log}"
    );
    assert!(report.netlinks.is_some());
    assert!(report.stats.by_reason.contains_key(vmx::knet::ROW));
    let st = ns
        .lock()
        .unwrap()
        .switch()
        .unwrap()
        .switch
        .lock()
        .status()
        .to_string();
    assert!(!st.contains(" client ") && !st.contains(" guest "), "{st}");

    let (card, _peer) = link_card();
    let devices = session::Devices {
        links: vec![card],
        ..Default::default()
    };
    let (_, report, _, log) = run_with(false, script(), devices);
    assert_eq!(report.outcome, Ok(Outcome::Halted { pc: 0x1006 }), "{log}");
    assert!(
        log.contains("-n links: the tool's virtio-net: the hypervisor serves no PCI bus"),
        "{log}"
    );
    assert!(report.netlinks.is_none());
}
