//! PCI configuration space in the kernel through 9P over TestHw: `pci` in `devices`, a
//! client's function added with `pci add` and read back by the guest, its BAR's port I/O
//! still reaching the client as an `io` exit (at the port the client gave, wherever the
//! guest moved the BAR), and the PIIX reset reaching the client.

mod common;
use common::*;
use devvmx::testhw::Exit;
use ninep::error::EBADARG;

const ADD: &[u8] = b"pci add 1af4:1001 010000 1af4:0002 64 10 0xc000";

#[test]
fn pci_add_needs_the_in_kernel_bus_and_a_whole_line() {
    let mut c = client();
    let v = c.vm();
    assert_eq!(c.write(v.ctl, 0, ADD), err("no in-kernel pci"));
    assert_eq!(c.write(v.ctl, 0, b"devices pic"), R::Count(11));
    assert_eq!(c.write(v.ctl, 0, ADD), err("no in-kernel pci"));

    let v = c.vm();
    assert_eq!(c.write(v.ctl, 0, b"devices pci"), R::Count(11));
    assert_eq!(c.write(v.ctl, 0, b"pci"), err(EBADARG));
    assert_eq!(c.write(v.ctl, 0, b"pci del 1"), err(EBADARG));
    assert_eq!(
        c.write(v.ctl, 0, b"pci add 1af4:1001 010000 1af4:0002 64 10 0xc001"),
        err(EBADARG)
    );
    for _ in 0..31 {
        assert_eq!(c.write(v.ctl, 0, ADD), R::Count(ADD.len() as u32));
    }
    assert_eq!(c.write(v.ctl, 0, ADD), err("pci bus full"));
}

#[test]
fn the_guest_reads_a_clients_function_in_the_kernel_and_its_bar_reaches_the_client() {
    let mut c = client();
    let v = c.vm();
    assert_eq!(c.write(v.ctl, 0, b"devices pci"), R::Count(11));
    assert_eq!(c.write(v.ctl, 0, ADD), R::Count(ADD.len() as u32));
    c.ns.hw_mut().exits.extend([
        Exit::io(0xcf8, 4, false, 0x8000_0000),
        Exit::io(0xcfc, 4, true, 0),
        Exit::io(0xcf8, 4, false, 0x8000_0800),
        Exit::io(0xcfc, 4, true, 0),
        Exit::io(0xcf8, 4, false, 0x8000_0810),
        Exit::io(0xcfc, 4, true, 0),
        Exit::io(0xcf8, 4, false, 0x8000_083c),
        Exit::io(0xcfc, 2, true, 0x5555_0000),
        Exit::io(0xcf8, 4, false, 0x8000_1000), // device 2: none
        Exit::io(0xcfc, 4, true, 0),
        Exit::io(0xc010, 2, true, 0x1234), // decoding off: no device
        Exit::io(0xcf8, 4, false, 0x8000_0804),
        Exit::io(0xcfc, 2, false, 1), // I/O decoding on
        Exit::io(0xc010, 2, true, 0),
        // Firmware moves the BAR: the client still sees its home ports.
        Exit::io(0xcf8, 4, false, 0x8000_0810),
        Exit::io(0xcfc, 4, false, 0xd000),
        Exit::io(0xd012, 1, false, 7),
        Exit::io(0xc012, 1, true, 0), // no device there now
        Exit::io(0xcf9, 1, false, 0x06),
        Exit::new(10),
    ]);
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    c.run();
    let line = |c: &mut Client| match c.read(v.wait, 0, 512) {
        R::Data(d) => String::from_utf8(d).unwrap(),
        r => panic!("{r:?}"),
    };
    // The BAR's port is the client's: its exit comes through wait, the configuration
    // accesses before it did not.
    assert!(line(&mut c).starts_with("io 0xc0100009 "));
    {
        let e = &c.ns.hw().entries;
        assert_eq!(e[2].ax, 0x1237_8086, "the host bridge");
        assert_eq!(e[4].ax, 0x1001_1af4, "the client's function at 00:01.0");
        assert_eq!(e[6].ax, 0xc001, "its I/O BAR");
        assert_eq!(e[8].ax, 0x5555_010a, "INTA on line 10");
        assert_eq!(e[10].ax, 0xffff_ffff, "no device 2");
        assert_eq!(e[11].ax, 0xffff, "no device at a BAR not decoded");
        assert_eq!(e.len(), 14);
    }
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    c.run();
    let l = line(&mut c);
    assert!(
        l.starts_with("io 0xc0120000 ") && l.ends_with(" ax 0x7\n"),
        "{l}"
    );
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    c.run();
    assert_eq!(c.ns.hw().entries.last().unwrap().ax & 0xff, 0xff);
    // The reset through 0xcf9 is the client's to act on.
    assert!(line(&mut c).starts_with("io 0xcf90000 "));
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    c.run();
    assert!(line(&mut c).starts_with(".cpuid "));
}
