//! The host switch's port files over 9P: `switch/clone` makes a client port whose queue
//! file reads the frames the switch sends it (a read waits for one) and delivers the
//! frames written to it; the port leaves at the clunk.

mod common;
use common::*;
use devvmx::HostSwitch;
use netswitch::{qfile, Config, Kind, Mac, PortId, Switch};
use protocol::{om, Fcall};
use std::sync::Arc;

const GUEST: [u8; 6] = [2, 0, 0, 0, 0, 1];
const FAR: [u8; 6] = [2, 0, 0, 0, 0, 7];

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x44u8; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

#[test]
fn a_client_port_through_its_queue_file() {
    let mut c = Client::new();
    assert_eq!(c.walk(0, 1, &["switch"]), err("file does not exist"));

    let sw = Arc::new(spin::Mutex::new(Switch::new(Config::default())));
    c.ns.set_switch(HostSwitch {
        switch: sw.clone(),
        millis: || 0,
    });
    // Walkable, not listed: the root's listing stays the seed's.
    assert!(!c.ls("").contains(&"switch".to_string()));
    assert_eq!(c.ls("switch"), ["clone"]);
    // A VM's card on the switch, as the kernel adds one.
    let guest = sw.lock().add(Kind::Guest, Some(Mac(GUEST))).unwrap();
    let port = c.open_path("switch/clone", om::RDWR).unwrap();
    let R::Stat(name, _, mode, uid) = c.stat(port) else {
        panic!("stat the port's file")
    };
    assert_eq!((name.as_str(), mode, uid.as_str()), ("1", 0o660, OWNER));
    assert_eq!(sw.lock().kind(PortId(1)), Some((Kind::Client, None)));
    // Nothing queued: the read waits, and is answered when the guest sends.
    c.send(
        9,
        Fcall::Tread {
            fid: port,
            offset: 0,
            count: 8192,
        },
    );
    assert!(c.replies().is_empty(), "the read waits for a frame");
    sw.lock().input(guest, &frame(FAR, GUEST), 0).unwrap();
    c.process();
    let mut want = Vec::new();
    qfile::encode(&frame(FAR, GUEST), &mut want);
    assert_eq!(c.replies(), vec![(9, R::Data(want.clone()))]);
    assert!(want.starts_with(b"frame 60\n"));
    // A frame written goes to the guest; a bad write delivers nothing.
    let mut w = Vec::new();
    qfile::encode(&frame(GUEST, FAR), &mut w);
    assert_eq!(c.write(port, 0, &w), R::Count(w.len() as u32));
    assert_eq!(sw.lock().pop(guest), Some(frame(GUEST, FAR)));
    assert_eq!(c.write(port, 0, &w[..20]), err("write ends inside a frame"));
    assert_eq!(
        c.write(port, 0, b"frame x\n"),
        err("bad frame header: want frame N")
    );
    assert_eq!(sw.lock().queued(guest), 0);
    // A read too short for the next frame says how much it needs.
    sw.lock().input(guest, &frame(FAR, GUEST), 0).unwrap();
    assert_eq!(
        c.read(port, 0, 10),
        err("read count too small: the next frame needs 69")
    );
    assert_eq!(c.read(port, 0, 100), R::Data(want));
    // The port leaves with its fid.
    c.clunk(port);
    assert_eq!(sw.lock().kind(PortId(1)), None);
    // Only the owner makes ports.
    assert!(matches!(c.attach(20, "glenda", ""), R::Open(_)));
    c.walk(20, 21, &["switch", "clone"]);
    assert_eq!(c.open(21, om::RDWR), err("permission denied"));
}
