//! A guest that floods its in-kernel virtio-net card (devvmx's `pci net`) under Bochs
//! (VT-x), on the switch whose uplink is the hypervisor's NIC (`switch`): the guest
//! (`guests/netflood.S`) refills and notifies its whole transmit ring forever without an
//! exit (broadcasts, unicasts to a MAC nobody has, unicasts to a client port's learned
//! address) and never offers a receive buffer, while a client port (`switch/clone`, the
//! client reading nothing from it) keeps writing frames at the guest's card. While it
//! runs, a second client's Tstat round trips over TCP (through the same switch) keep
//! answering, each within [`BOUND`]; no port's queue ever holds more than the switch's
//! bound, the flooded ports' queues hold at least half of it (a lone flooder's part; the
//! host's interface, flooded with the guest's broadcasts, keeps room for the TCP
//! segments) with their `full` drops growing, and the card's `sent` keeps moving. Two
//! CPUs: the guest floods from the second without pause while the first serves 9P (on
//! one, the guest's time slices leave the server time to catch up, which hid a stall). After the VM, the client port and the segment are gone,
//! the switch has only its own ports and `memfree` is back.

mod kblk_common;

use kblk_common::{segment, text, tstats, vm, OWNER, STATS};
use netswitch::{qfile, Config};
use ninep_client::{om, Client};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::guests::{LOAD, NETFLOOD, NETFLOOD_PEER, NETFLOOD_ROUNDS};
use vmm_tests::status::num as field;

const RAM: u64 = 0x40000;
/// The flooding guest's card.
const CARD: &str = "02:00:00:00:00:0f";
const CARD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0f];
/// The source of the client port's frames (learned there), and the guest's third
/// destination.
const PEER: [u8; 6] = [2, 0, 0, 0, 0, 0x0e];
/// Frames in each of the client port's writes (one Twrite on the serial link's 8 KiB
/// msize): more than a queue holds in three writes.
const BATCH: usize = 100;
/// The slowest a Tstat may answer while the guest floods. Under Bochs they took 6 to 10 s
/// (the first CPU moves every frame the guest floods to the uplink onto the emulated
/// e1000, about 1,800 a second, besides serving 9P); before the switch and the stack
/// took turns, they never answered.
const BOUND: Duration = Duration::from_secs(20);
/// Tstats of each file while the guest floods (twice that in all).
const FLOODED: usize = 8;

/// One `switch port` line of the root status.
#[derive(Debug)]
struct Port {
    id: u16,
    kind: String,
    mac: String,
    input: u64,
    output: u64,
    full: u64,
    queued: u64,
}

/// The switch's ports, from the root status `st`.
fn ports(st: &str) -> Vec<Port> {
    st.lines()
        .filter_map(|l| l.strip_prefix("switch port "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let count = |k: &str| -> u64 {
                let i = w.iter().position(|x| *x == k).expect(l);
                w[i + 1].parse().expect(l)
            };
            Port {
                id: w[0].parse().expect(l),
                kind: w[1].into(),
                mac: w[2].into(),
                input: count("in"),
                output: count("out"),
                full: count("full"),
                queued: count("queued"),
            }
        })
        .collect()
}

/// The switch's lines of the root status `st`.
fn switch_lines(st: &str) -> String {
    let lines: Vec<&str> = st.lines().filter(|l| l.starts_with("switch")).collect();
    lines.join("\n")
}

/// The port of `kind` with address `mac` (`-` for a learning port).
fn port<'a>(ps: &'a [Port], kind: &str, mac: &str) -> Option<&'a Port> {
    ps.iter().find(|p| p.kind == kind && p.mac == mac)
}

/// BATCH frames of type 0x88b5 from PEER to the card, as the client port's file takes
/// them.
fn batch() -> Vec<u8> {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&CARD_MAC);
    f[6..12].copy_from_slice(&PEER);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut out = Vec::new();
    for i in 0..BATCH {
        f[14..18].copy_from_slice(&(i as u32).to_le_bytes());
        qfile::encode(&f, &mut out);
    }
    out
}

/// The most frames a switch port's queue holds (the kernel's switch is the default one).
fn queue_bound() -> u64 {
    Config::default().queue as u64
}

/// `c`'s root status, no switch port in it holding more than the queue bound.
fn bounded_text(c: &Client, when: &str) -> String {
    let st = vmm_tests::status::read(c);
    for p in ports(&st) {
        assert!(p.queued <= queue_bound(), "port {} {when}: {st}", p.id);
    }
    st
}

/// The switch's ports from `c`'s root status, none holding more than the queue bound.
fn bounded(c: &Client, when: &str) -> Vec<Port> {
    ports(&bounded_text(c, when))
}

#[test]
fn a_guest_flooding_its_card_does_not_stop_9p() {
    let bound = queue_bound();
    let m = Machine::vtx(Opts {
        cmdline: format!("owner={OWNER} serve=uart,net switch"),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        cpus: 2,
        ..Opts::default()
    });
    let c = m.client(OWNER, "");
    // The second client: over TCP, its frames through the switch the guest floods.
    let t = m.tcp_client("glenda", "");
    let before = field(&vmm_tests::status::read(&c), "memfree");
    let own = ports(&vmm_tests::status::read(&c));
    let ramdata = segment(&c, "nfram", RAM);
    ramdata.write_all_at(LOAD, NETFLOOD).unwrap();
    ramdata.write_all_at(NETFLOOD_PEER, &PEER).unwrap();
    let (ctl, n) = vm(&c, om::RDWR, "nfram", RAM);
    for cmd in ["devices pic pci", &format!("pci net {CARD}")] {
        ctl.write_str(cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    let path = |f: &str| format!("vmx/{n}/{f}");
    // The client port: written to, never read.
    let q = c.open("switch/clone", om::RDWR).unwrap();
    let qid = q.stat().unwrap().name;
    tstats(&t, &path("status"), "before the guest runs", STATS);
    ctl.write_str("go").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU32::new(0));
    let writer = {
        let (stop, writes, frames, c) = (stop.clone(), writes.clone(), batch(), c.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = q.write_at(0, &frames).expect("write frames at the card");
                assert_eq!(n, frames.len());
                writes.fetch_add(1, Ordering::Relaxed);
                bounded(&c, "after a write at the card");
                std::thread::sleep(Duration::from_millis(100));
            }
            q
        })
    };
    let rounds = || {
        let b = ramdata.read_at(NETFLOOD_ROUNDS, 4).unwrap();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    let sent = || -> u64 {
        let l = text(&c, &path("net"));
        let w: Vec<&str> = l.split_whitespace().collect();
        let i = w.iter().position(|x| *x == "sent").expect(&l);
        w[i + 1].parse().expect(&l)
    };
    let (first, sent0) = (rounds(), sent());
    bounded(&c, "as the flood starts");
    std::thread::sleep(Duration::from_secs(2));
    let st = bounded_text(&c, "two seconds into the flood");
    println!("two seconds into the flood:\n{}", switch_lines(&st));
    let slowest = tstats(&t, &path("status"), "while the guest floods", FLOODED);
    let mid = bounded(&c, "while the guest floods");
    let slowest = slowest.max(tstats(
        &t,
        "status",
        "of the root while the guest floods",
        FLOODED,
    ));
    // Enough writes that the card's port had more than its queue holds.
    let start = Instant::now();
    while u64::from(writes.load(Ordering::Relaxed)) * (BATCH as u64) <= bound {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the writes at the card"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let q = writer.join().expect("the writer");
    let st = bounded_text(&c, "after the writes");
    let (last, sent1) = (rounds(), sent());
    println!(
        "the guest made {} rounds of 128 frames, the switch took {} of its frames; \
         {} writes of {BATCH} frames at it",
        last.wrapping_sub(first),
        sent1 - sent0,
        writes.load(Ordering::Relaxed)
    );
    println!("{}", switch_lines(&st));
    assert!(slowest < BOUND, "a Tstat took {slowest:?}");
    assert!(last != first && sent1 > sent0, "the guest did not flood");
    assert_eq!(text(&c, &path("status")).trim(), "running");
    let net = text(&c, &path("net"));
    assert!(net.ends_with(" received 0 dropped 0 ok\n"), "{net}");
    // Both receive sides are flooded: a lone flooder holds half of a queue, the rest of
    // its frames drop (the other ports keep the other half): every frame the
    // client port took was for the card, and every frame the card sent was for the client
    // port too (a broadcast, a unicast to nobody, flooded to the learning ports, or one to
    // the address the client port learned); the host's interface may have broadcast more.
    let ps = ports(&st);
    let card = port(&ps, "guest", CARD).unwrap_or_else(|| panic!("no card port: {st}"));
    let client = ps
        .iter()
        .find(|p| p.id.to_string() == qid && p.kind == "client")
        .unwrap_or_else(|| panic!("no client port {qid}: {st}"));
    assert!(
        card.queued >= bound / 2 && client.queued >= bound / 2,
        "{st}"
    );
    assert!(card.output + card.full >= client.input, "{st}");
    assert!(client.output + client.full >= card.input, "{st}");
    assert!(card.full > 0, "{st}");
    let was = mid.iter().find(|m| m.id == client.id).map_or(0, |m| m.full);
    assert!(client.full > was, "the client port's drops stopped: {st}");

    ctl.write_str("quit").unwrap();
    drop((ctl, q, ramdata));
    let start = Instant::now();
    while !vmm_tests::status::read(&c).contains("vms 0") {
        assert!(start.elapsed() < Duration::from_secs(30), "the VM stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.remove("segment/nfram").unwrap();
    // The Tstats' client still answers, and the switch is back to its own ports.
    tstats(&t, "status", "after the VM", STATS);
    let st = vmm_tests::status::read(&c);
    assert!(st.contains("vms 0") && st.contains("segments 0"), "{st}");
    let after = ports(&st);
    assert_eq!(
        after.iter().map(|p| p.id).collect::<Vec<_>>(),
        own.iter().map(|p| p.id).collect::<Vec<_>>(),
        "{st}"
    );
    for p in &after {
        assert!(p.queued <= bound, "{st}");
    }
    assert_eq!(field(&st, "memfree"), before, "memory left behind: {st}");
    assert!(!m.log().contains("kernel panic"), "{}", m.diagnostics());
}
