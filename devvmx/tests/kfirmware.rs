//! A firmware machine through 9P over TestHw (the `firmware MEM` extension, for a BIOS
//! driven from a shell): its errors; the RAM size in the CMOS; port A, the firmware
//! debug port (joining `cons`) and every unclaimed port answered inside; a reset through
//! port A reaching `wait`; and the stop ending a `cons` read that was waiting, where a
//! VM without `firmware` keeps it waiting.

mod common;
use common::*;
use devvmx::testhw::Exit;
use ninep::error::EBADARG;
use protocol::om;

const CONSTAG: u16 = 78;
const DEVICES: &[u8] = b"devices pic pit uart rtc kbd quiet cpu pci";

fn ok(c: &mut Client, v: &Vm, cmd: &[u8]) {
    assert_eq!(ctl(c, v, cmd), R::Count(cmd.len() as u32), "{cmd:?}");
}

#[test]
fn firmware_message_errors() {
    let mut c = client();
    let v = c.vm();
    assert_eq!(
        ctl(&mut c, &v, b"firmware 0x1000000"),
        err("no in-kernel rtc")
    );
    ok(&mut c, &v, b"devices pic uart");
    assert_eq!(
        ctl(&mut c, &v, b"firmware 0x1000000"),
        err("no in-kernel rtc")
    );
    let v = c.vm();
    ok(&mut c, &v, DEVICES);
    for bad in ["firmware 16M", "firmware 0x1000", "firmware 0x100000000"] {
        assert_eq!(ctl(&mut c, &v, bad.as_bytes()), err(EBADARG), "{bad}");
    }
    assert_eq!(
        ctl(&mut c, &v, b"firmware"),
        err("wrong #args in control message \"firmware\"")
    );
    ok(&mut c, &v, b"firmware 0x1000000");
    c.ns.hw_mut().exits.push_back(Exit::new(10));
    ok(&mut c, &v, b"go");
    assert_eq!(ctl(&mut c, &v, b"firmware 0x1000000"), err("VM running"));
}

#[test]
fn a_firmware_machine_answers_every_port_but_resets() {
    let mut c = client();
    let v = c.vm();
    ok(&mut c, &v, DEVICES);
    ok(&mut c, &v, b"firmware 0x4000000");
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    c.ns.hw_mut().exits.extend([
        // 1: the CMOS's 64 KiB units above 16 MiB, low byte: 48 MiB of them.
        out(0x70, 0x34),
        inb(0x71),
        // 3: port A shows A20 on; A20 written back.
        inb(0x92),
        out(0x92, 0x02),
        // 5: the debug port is there, and its bytes join COM1's.
        inb(0x402),
        out(0x402, u64::from(b'h')),
        out(0x3f8, u64::from(b'i')),
        // 8: COM2, the done port and a port nobody has: no device.
        inb(0x2f8),
        inb(0xf4),
        out(0x1234, 7),
        // 11: port A's fast reset: the client's.
        out(0x92, 0x03),
    ]);
    ok(&mut c, &v, b"go");
    c.start_read(CONSTAG, cons, 8192);
    c.run();
    // The stop answered the read that waited: the console up to it.
    let mut got = c.replies();
    if got.is_empty() {
        c.run();
        got = c.replies();
    }
    assert_eq!(got, vec![(CONSTAG, R::Data(b"hi".to_vec()))]);
    let w = c.read(v.wait, 0, 512);
    assert_eq!(
        w,
        R::Data(b"io 0x920000 pc 0xa sp 0x0 ilen 0x1 iinfo 0x0 ax 0x3\n".to_vec())
    );
    let ax = |c: &Client, exit: usize| c.ns.hw().entries[exit + 1].ax & 0xff;
    assert_eq!(ax(&c, 1), 48 << 4 & 0xff);
    assert_eq!(ax(&c, 2), 0x02);
    assert_eq!(ax(&c, 4), 0xe9);
    assert_eq!(ax(&c, 7), 0xff);
    assert_eq!(ax(&c, 8), 0xff);
    // Then the end of file.
    assert_eq!(c.read(cons, 0, 8192), R::Data(vec![]));
}

#[test]
fn without_firmware_the_same_ports_reach_wait() {
    let mut c = client();
    let v = c.vm();
    ok(&mut c, &v, DEVICES);
    c.ns.hw_mut()
        .exits
        .extend([inb(0x92), inb(0x402), inb(0x2f8)]);
    for port in ["0x920008", "0x4020008", "0x2f80008"] {
        ok(&mut c, &v, b"go");
        c.run();
        let R::Data(d) = c.read(v.wait, 0, 512) else {
            panic!()
        };
        assert!(d.starts_with(format!("io {port} ").as_bytes()), "{d:?}");
    }
}
