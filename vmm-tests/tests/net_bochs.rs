//! 9P over TCP/IP under Bochs: the kernel's e1000 driver and TCP stack on Bochs's slirp,
//! reached through its host forward on 127.0.0.1.

use vmm_tests::emu::{Machine, Nic, Opts};

use vmm_tests::status::read as status;

#[test]
fn e1000_serves_9p_over_slirp() {
    serves("owner=eve serve=uart,net");
}

/// The same through the switch: Bochs's e1000 in promiscuous mode as its uplink.
#[test]
fn e1000_serves_9p_through_the_switch() {
    let st = serves("owner=eve serve=uart,net switch");
    assert!(st.contains("\nswitch port 1 host "), "{st}");
}

fn serves(cmdline: &str) -> String {
    let m = Machine::bochs(Opts {
        cmdline: cmdline.into(),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        ..Opts::default()
    });
    // Bochs's e1000 has no MSI: its INTx line.
    let line = m.nic_line("e1000");
    assert!(line.contains(", intx irq "), "{line}");
    let c = m.tcp_client("glenda", "");
    let st = status(&c);
    assert!(st.contains("net tcp!10.0.2.15!564"), "{st}");
    st
}
