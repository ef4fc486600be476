//! The tool's virtio-net on a Linux TAP device (`-n tap!NAME`), against the host's own
//! kernel: the test makes a TAP device, opens it through `-n`'s link code, gives the host
//! side an address (`ip addr add 10.77.N.1/24`, `ip link set up`) and plays the guest's
//! driver (rings in a byte array): an ARP request for the host's address goes out through
//! the transmit queue and the host's ARP reply comes back into a receive buffer, then an
//! ICMP echo the same way. And the errors a user meets opening one: a busy device, a TUN
//! device of that name, no CAP_NET_ADMIN.
//!
//! Needs root (CAP_NET_ADMIN) and /dev/net/tun, as scripts/test and CI have: without them
//! the test fails with the reason, it does not skip. Each device has a name of its own
//! (`vmxt` + process ID + a letter) and is removed after; its subnet is 10.77.N.0/24, on
//! that interface only.

use std::process::Command;
use std::time::{Duration, Instant};
use vmm_tests::fixtures::{ether, ip, HostDev, NicDriver};
use vmx::virtio::net::Spec;

const OURS: [u8; 6] = [0x52, 0x54, 0, 0x77, 0, 2];

fn open(
    name: &str,
) -> Result<
    (
        Box<dyn vmx::virtio::net::Link>,
        vmx::virtio::net::FrameSource,
    ),
    String,
> {
    Spec::parse(&format!("tap!{name}")).unwrap().open()
}

/// Sends `frame` every second until a received frame satisfies `want` (at most 30 s).
fn exchange<T>(
    nic: &mut NicDriver,
    frame: &[u8],
    what: &str,
    want: impl Fn(&[u8]) -> Option<T>,
) -> T {
    let t0 = Instant::now();
    let mut last = None::<Instant>;
    let mut seen = Vec::new();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no {what} from the host through the TAP device; frames that came: {seen:02x?}"
        );
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            nic.send(frame);
            last = Some(Instant::now());
        }
        for f in nic.receive(Duration::from_millis(100)) {
            if let Some(v) = want(&f) {
                return v;
            }
            seen.push(f);
        }
    }
}

#[test]
fn arp_and_ping_with_the_host_kernel_over_a_tap() {
    let dev = HostDev::new('a', "tap");
    let n = (std::process::id() % 250) as u8;
    let (host_ip, our_ip) = ([10, 77, n, 1], [10, 77, n, 2]);
    let (link, frames) = open(&dev.0).unwrap_or_else(|e| panic!("{e}"));
    dev.up(&format!("10.77.{n}.1/24"));
    let host_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", dev.0)).unwrap();
    let host_mac = vmx::virtio::net::parse_mac(host_mac.trim()).unwrap();
    let mut nic = NicDriver::new(OURS, link, frames);

    let arp = ether::arp_request(OURS, our_ip, host_ip);
    let mac = exchange(&mut nic, &arp, "ARP reply", |f| {
        ether::arp_reply(f, OURS, host_ip)
    });
    assert_eq!(
        mac, host_mac,
        "the ARP reply names the TAP device's host side"
    );

    let payload: Vec<u8> = (0..32).collect();
    let echo = ether::echo_request((OURS, mac), (our_ip, host_ip), 0x766d, 1, &payload);
    exchange(&mut nic, &echo, "ICMP echo reply", |f| {
        ether::is_echo_reply(f, &echo).then_some(())
    });
    assert!(nic.transmitted() >= 2);
    assert!(nic.dev.line(), "the device raised its interrupt line");
}

#[test]
fn tap_errors_say_what_is_wrong() {
    // A TAP device someone else has open: busy.
    let dev = HostDev::new('b', "tap");
    let first = open(&dev.0).unwrap_or_else(|e| panic!("{e}"));
    let e = open(&dev.0).err().expect("a second open of one TAP device");
    assert!(
        e.starts_with(&format!("-n tap!{}: the device is busy", dev.0)),
        "{e}"
    );
    drop(first);
    // A TUN device (IP packets, no Ethernet) of that name.
    let tun = HostDev::new('c', "tun");
    let e = open(&tun.0).err().expect("a TUN device opened as a TAP");
    assert!(
        e.starts_with(&format!("-n tap!{}: not a TAP device", tun.0)),
        "{e}"
    );
    // The tool without CAP_NET_ADMIN (root's capabilities dropped from the bounding set):
    // asked for a device there is none of, which only CAP_NET_ADMIN may make, and for one
    // made for another user; refused with the reason before any hypervisor is dialed, no
    // panic. (A persistent device with no owner, like `dev`, any user who may open
    // /dev/net/tun can attach to.)
    let absent = format!("vmxt{}d", std::process::id());
    let err = vmx_without_caps(&absent);
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("vmx: -n tap!{absent}: no such device, ")))
            && err.contains(&format!("ip tuntap add {absent} mode tap user YOU")),
        "{err}"
    );
    let theirs = HostDev::new('e', "tap");
    ip(&["tuntap", "del", "dev", &theirs.0, "mode", "tap"]);
    ip(&[
        "tuntap", "add", "dev", &theirs.0, "mode", "tap", "user", "65534",
    ]);
    let err = vmx_without_caps(&theirs.0);
    assert!(
        err.lines().any(|l| l.starts_with(&format!(
            "vmx: -n tap!{}: not permitted: it was made for another user",
            theirs.0
        ))),
        "{err}"
    );
}

/// Runs the vmx binary with `-n tap!NAME` without CAP_NET_ADMIN: its stderr, after
/// checking that it failed and did not panic.
fn vmx_without_caps(name: &str) -> String {
    let out = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(vmm_tests::fixtures::tool::vmx())
        .args(["-a", "unix!/nonexistent/vmx-tap-test.sock", "--demo", "-n"])
        .arg(format!("tap!{name}"))
        .output()
        .expect("run setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}
