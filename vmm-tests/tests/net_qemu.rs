//! 9P over TCP/IP under QEMU: the kernel's own TCP stack on virtio-net and e1000, reached
//! through QEMU's user-mode network and a host forward bound to 127.0.0.1.

use ninep_client::Client;
use std::time::Duration;
use vmm_tests::emu::{Machine, Nic, Opts};

const SECRET: &str = "opensesame";
const OWNER: &str = "eve";

fn boot(nic: Nic) -> Machine {
    Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=uart,virtio,net"),
        virtio_ports: 1,
        nic: Some(nic),
        ..Opts::default()
    })
}

fn status(c: &Client) -> String {
    String::from_utf8(c.read_file("status").expect("read status")).expect("text")
}

fn field(st: &str, key: &str) -> String {
    st.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("status has no {key}: {st}"))
        .to_string()
}

#[test]
fn virtio_net_serves_9p_with_a_dhcp_address() {
    let m = boot(Nic::VirtioNet);
    let c = m.tcp_client("glenda", "");
    let st = status(&c);
    assert_eq!(field(&st, "net"), "tcp!10.0.2.15!564", "{st}");
    let _ = Duration::from_secs(1);
}

#[test]
fn e1000_serves_9p_with_a_dhcp_address() {
    let m = boot(Nic::E1000);
    let c = m.tcp_client("glenda", "");
    let st = status(&c);
    assert_eq!(field(&st, "net"), "tcp!10.0.2.15!564", "{st}");
}
