//! 9P over TCP/IP under Bochs: the kernel's e1000 driver and TCP stack on Bochs's slirp,
//! reached through its host forward on 127.0.0.1.

use vmm_tests::emu::{Machine, Nic, Opts};

use vmm_tests::status::read as status;

#[test]
fn e1000_serves_9p_over_slirp() {
    let m = Machine::bochs(Opts {
        cmdline: "owner=eve serve=uart,net".into(),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        ..Opts::default()
    });
    let c = m.tcp_client("glenda", "");
    let st = status(&c);
    assert!(st.contains("net tcp!10.0.2.15!564"), "{st}");
}
