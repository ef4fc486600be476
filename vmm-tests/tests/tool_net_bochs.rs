//! The tool's `-n` links under Bochs, through the real interfaces: the hypervisor boots
//! from its ISO and serves 9P on COM1; the tool (its library, as `vmx -n unix!...`) runs
//! the pingpong guest (guests/pingpong.S, role 1: PINGS broadcast pings from its
//! virtio-net card at 00:01.0, each answer awaited by polling, then the done port) with
//! the card on a link, a unix socket pair in QEMU's stream framing whose other end the
//! test plays: a peer that sends every frame back to its sender. Once with the card the
//! hypervisor's (`pci net`) and its frames crossing a `switch/clone` port the tool pumps
//! to the link (the default where the hypervisor has them), once with the tool's own
//! virtio-net (`--no-kernel-nets`); the round trips of each are printed.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::fixtures::{run_options, Capture as Buf};
use vmm_tests::guests;
use vmx::layout::Layout;
use vmx::run::Outcome;
use vmx::session::{self, Report};
use vmx::virtio::net::{read_frame, Link, Stream};

/// Pings per run.
const PINGS: u32 = 5;
/// The guest's card, and the peer's address it answers from.
const CARD: [u8; 6] = [2, 0, 0, 0, 0, 0x5a];
const PEER: [u8; 6] = [2, 0, 0, 0, 0, 0x5b];

#[test]
fn pings_cross_a_link_through_the_kernels_switch_and_on_the_tools_card() {
    let m = Machine::vtx(Opts {
        virtio_ports: 0,
        ..Opts::default()
    });
    let (r, echoed) = ping(&m, true);
    let c = r.netlinks.clone().expect("the link through the switch");
    assert_eq!(
        (c.to_links, c.from_links, c.dropped),
        (PINGS.into(), PINGS.into(), 0),
        "{c:?}"
    );
    assert_eq!(echoed, u64::from(PINGS));
    // The card's registers never came to the tool.
    assert_eq!(
        r.stats.by_reason.get("io/virtio"),
        None,
        "{}",
        r.stats.report()
    );
    assert!(r.stats.by_reason.contains_key(vmx::knet::ROW));

    let (r, echoed) = ping(&m, false);
    assert!(r.netlinks.is_none());
    assert_eq!(echoed, u64::from(PINGS));
    assert!(
        r.stats.by_reason.contains_key("io/virtio"),
        "{}",
        r.stats.report()
    );
}

/// One run of the pinger, its card the hypervisor's (`kernel`) or the tool's: the report
/// and the frames the peer echoed.
fn ping(m: &Machine, kernel: bool) -> (Report, u64) {
    let client = m.client("eve", "");
    client.set_timeout(None);
    let layout = Layout::new(4 << 20).unwrap();
    // The role and count where the guest reads them (its variables past the code).
    let vars = (guests::PINGPONG_ROLE - guests::LOAD) as usize;
    let mut code = guests::PINGPONG.to_vec();
    code.resize(code.len().max(vars + 16), 0);
    code[vars..vars + 4].copy_from_slice(&1u32.to_le_bytes());
    let pings = (guests::PINGPONG_PINGS - guests::LOAD) as usize;
    code[pings..pings + 4].copy_from_slice(&PINGS.to_le_bytes());
    let img = vmx::loader::load_raw(&code, guests::LOAD, &layout).unwrap();
    // The peer: every frame back to its sender, from PEER.
    let (mine, peer) = UnixStream::pair().unwrap();
    let echoed = Arc::new(AtomicU64::new(0));
    std::thread::spawn({
        let echoed = echoed.clone();
        let mut r = peer.try_clone().unwrap();
        let mut w = Stream(peer);
        move || {
            while let Ok(Some(mut f)) = read_frame(&mut r) {
                if f.len() < 14 {
                    continue;
                }
                let from: [u8; 6] = f[6..12].try_into().unwrap();
                f[..6].copy_from_slice(&from);
                f[6..12].copy_from_slice(&PEER);
                if w.send(&f).is_err() {
                    return;
                }
                echoed.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut r = mine.try_clone().unwrap();
    let card = vmx::knet::Card {
        mac: CARD,
        link: Box::new(Stream(mine)),
        source: Box::new(move || read_frame(&mut r)),
        name: "unix!/peer".into(),
    };
    let (out, log) = (Buf::default(), Buf::default());
    let (tx, rx) = channel();
    std::thread::spawn({
        let log = log.clone();
        move || {
            // (Made here: a run's devices may hold what cannot cross threads.)
            let devices = if kernel {
                session::Devices {
                    links: vec![card],
                    ..Default::default()
                }
            } else {
                session::Devices {
                    nets: vec![card.tool()],
                    ..Default::default()
                }
            };
            let opts = run_options(
                &format!("ping{}", u8::from(kernel)),
                out,
                log,
                true,
                devices,
            );
            let _ = tx.send(session::run(client, &layout, &img, opts));
        }
    });
    let r = match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{e}\n{}\n{}", log.text(), m.diagnostics())),
        Err(_) => panic!(
            "the pings did not end in 10 minutes (peer echoed {})\n{}\n{}",
            echoed.load(Ordering::Relaxed),
            log.text(),
            m.diagnostics()
        ),
    };
    let log = log.text();
    eprintln!(
        "--- {PINGS} pings over the link, the card {} ---\n{log}--- 9P round trips ---\n{}links: {:?}",
        if kernel {
            "the hypervisor's on its switch"
        } else {
            "the tool's"
        },
        r.stats.report(),
        r.netlinks
    );
    assert_eq!(r.outcome, Ok(Outcome::Done(0)), "{log}");
    let said = if kernel {
        "the hypervisor's virtio-net on its switch"
    } else {
        "PC devices in the hypervisor"
    };
    assert!(log.contains(said), "{log}");
    (r, echoed.load(Ordering::Relaxed))
}
