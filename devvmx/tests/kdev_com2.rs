//! The in-kernel COM2 (`devices ... com2`, an extension, see DEVIATIONS.md) through 9P
//! over TestHw: a second 16550 at 0x2f8 answered without a wait line, its output dropped
//! (not on COM1's `cons`), and 0x2f8 still the client's for a VM that did not ask.
//! Linux's probe of it, read for read, is one of pcdev's shared scripts (tests/kdev.rs).

mod common;
use common::*;
use devvmx::testhw::Exit;
use protocol::om;

fn wait_line(c: &mut Client, v: &Vm) -> String {
    match c.read(v.wait, 0, 512) {
        R::Data(d) => String::from_utf8(d).unwrap(),
        r => panic!("{r:?}"),
    }
}

#[test]
fn com2_is_answered_inside_and_its_output_goes_nowhere() {
    let mut c = client();
    let v = c.vm();
    let cmd = b"devices pic uart com2";
    assert_eq!(ctl(&mut c, &v, cmd), R::Count(cmd.len() as u32));
    c.ns.hw_mut().exits.extend([
        out(0x3f8, b'a'.into()),
        out(0x2f8, b'b'.into()),
        out(0x2ff, 0x5a),
        inb(0x2ff),
        inb(0x2fd),
        inb(0x2f8),
        Exit::new(10),
    ]);
    ctl(&mut c, &v, b"go");
    c.run();
    // The first exit the client sees is the cpuid after them.
    assert!(wait_line(&mut c, &v).starts_with(".cpuid "));
    let e = &c.ns.hw().entries;
    // Scratch read back; transmitter empty; nothing received.
    assert_eq!(e[4].ax & 0xff, 0x5a);
    assert_eq!(e[5].ax & 0xff, 0x60);
    assert_eq!(e[6].ax & 0xff, 0);
    // COM2's byte is not COM1's.
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    assert_eq!(c.read(cons, 0, 100), R::Data(b"a".to_vec()));
}

#[test]
fn without_com2_its_ports_reach_wait() {
    let mut c = client();
    let v = c.vm();
    let cmd = b"devices pic uart";
    assert_eq!(ctl(&mut c, &v, cmd), R::Count(cmd.len() as u32));
    c.ns.hw_mut().exits.push_back(inb(0x2f9));
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(wait_line(&mut c, &v).starts_with("io 0x2f90008 "));
}

#[test]
fn com2_needs_the_pic() {
    let mut c = client();
    let v = c.vm();
    assert_eq!(
        ctl(&mut c, &v, b"devices com2"),
        err("pit, uart, com2 and kbd need the pic")
    );
}
