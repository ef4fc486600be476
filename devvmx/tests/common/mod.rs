//! The namespace served over the TestHw double, driven byte for byte through a
//! ninep::Session by the engine's test client (`ninep::testing`); what is here is only
//! what is particular to #X.
#![allow(dead_code)]

use devvmx::testhw::{Exit, TestHw};
use devvmx::{Config, Namespace};
use protocol::{dm, om};

pub use ninep::testing::{err, R};

pub const OWNER: &str = "eve";

/// A versioned session attached as the owner (fid 0 is the root).
pub type Client = ninep::testing::Client<Namespace<TestHw>>;

/// A client whose TSC moves only while the guest runs (1 GHz: ticks are ns).
pub fn client() -> Client {
    let mut hw = TestHw::new(4096);
    hw.tsc_step = 0;
    Client::with_hw(hw)
}

/// A one-byte out of `val` to `port`.
pub fn out(port: u16, val: u64) -> Exit {
    Exit::io(port, 1, false, val)
}

/// A one-byte in from `port`.
pub fn inb(port: u16) -> Exit {
    Exit {
        qual: Exit::io_qual(port, 1, true),
        ilen: 1,
        ..Exit::new(30)
    }
}

/// A write of `cmd` to VM `v`'s ctl.
pub fn ctl(c: &mut Client, v: &Vm, cmd: &[u8]) -> R {
    c.write(v.ctl, 0, cmd)
}

/// A VM's ctl fid (the clone file), its wait fid and its number.
pub struct Vm {
    pub ctl: u32,
    pub wait: u32,
    pub n: String,
}

/// What a #X test sets up and does beyond plain 9P.
pub trait Vmx {
    /// A session on a machine of 4096 frames.
    fn new() -> Self;
    /// As `new`, on a machine whose wall clock reads `secs`.
    fn with_clock(secs: u32) -> Self;
    fn with_hw(hw: TestHw) -> Self;
    /// As `with_hw`, versioned at `msize` (not 8 KiB).
    fn with_hw_msize(hw: TestHw, msize: u32) -> Self;
    /// Runs the guests once and lets the session answer what it now can.
    fn run(&mut self) -> bool;
    /// Opens clone ORDWR: the ctl fid and the VM's name.
    fn new_vm(&mut self) -> (u32, String);
    /// A new VM with its wait file open.
    fn vm(&mut self) -> Vm;
    /// Creates segment `name` sized `len` bytes.
    fn segment(&mut self, name: &str, len: u64);
}

impl Vmx for Client {
    fn new() -> Self {
        Self::with_hw(TestHw::new(4096))
    }

    fn with_clock(secs: u32) -> Self {
        let mut hw = TestHw::new(4096);
        hw.clock = secs;
        Self::with_hw(hw)
    }

    fn with_hw(hw: TestHw) -> Self {
        Self::with_hw_msize(hw, 8192 + 24)
    }

    fn with_hw_msize(hw: TestHw, msize: u32) -> Self {
        let ns = Namespace::new(
            hw,
            Config {
                owner: OWNER.into(),
                version: "test",
            },
        );
        let mut c = Client::connect(ns);
        assert_eq!(c.version(msize), R::Version(msize, "9P2000".into()));
        assert!(matches!(c.attach(0, OWNER, ""), R::Open(_)));
        c
    }

    fn run(&mut self) -> bool {
        let running = self.ns.run_guests();
        self.process();
        running
    }

    fn new_vm(&mut self) -> (u32, String) {
        let fid = self.open_path("vmx/clone", om::RDWR).unwrap();
        let R::Data(d) = self.read(fid, 0, 100) else {
            panic!()
        };
        (fid, String::from_utf8(d).unwrap())
    }

    fn vm(&mut self) -> Vm {
        let (ctl, n) = self.new_vm();
        let wait = self.open_path(&format!("vmx/{n}/wait"), om::READ).unwrap();
        Vm { ctl, wait, n }
    }

    fn segment(&mut self, name: &str, len: u64) {
        let dir = self.fid();
        self.walk(0, dir, &["segment"]);
        assert!(matches!(
            self.create(dir, name, dm::DIR | 0o777, om::READ),
            R::Open(_)
        ));
        self.clunk(dir);
        let ctl = format!("va 0x10000000 {len:#x} sticky");
        assert_eq!(
            self.write_path(&format!("segment/{name}/ctl"), ctl.as_bytes()),
            R::Count(ctl.len() as u32)
        );
    }
}
