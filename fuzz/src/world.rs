//! The namespace over TestHw that the kernel-device targets (kblk, knet) drive: a VM
//! whose RAM is segment `ram`, a page-sized segment `other` it never maps, and the
//! helpers that walk, open and write files and let the guest make scripted exits.

use devvmx::hw::Hw;
use devvmx::testhw::{Exit, TestHw};
use devvmx::{Config, Namespace, Node};
use ninep::{Ctx, Read, Tree};

/// The guest's RAM: 32 KiB at 0.
pub const RAM: usize = 0x8000;

pub struct World {
    pub ns: Namespace<TestHw>,
    pub ctx: Ctx<'static>,
    pub root: Node,
    /// The frames free before anything was made: all must come back.
    pub start: usize,
}

impl World {
    /// A namespace on 256 frames; `setup` prepares it before the owner attaches.
    pub fn new(setup: impl FnOnce(&mut Namespace<TestHw>)) -> World {
        let hw = TestHw::new(256);
        let start = hw.frames_free();
        let mut ns = Namespace::new(
            hw,
            Config {
                owner: "eve".into(),
                version: "fuzz",
            },
        );
        setup(&mut ns);
        let ctx = Ctx {
            uname: "eve",
            session: 1,
        };
        let root = ns.attach(&ctx, "").expect("attach");
        World {
            ns,
            ctx,
            root,
            start,
        }
    }

    pub fn walk(&mut self, path: &[&str]) -> Option<Node> {
        let mut n = self.root.clone();
        for p in path {
            n = self.ns.walk(&self.ctx, &n, p).ok()?;
        }
        Some(n)
    }

    pub fn open(&mut self, path: &[&str], mode: u8) -> Node {
        let mut n = self.walk(path).expect("walk");
        self.ns.open(&self.ctx, &mut n, mode).expect("open");
        n
    }

    pub fn write(&mut self, n: &mut Node, off: u64, data: &[u8]) -> Result<usize, ninep::Error> {
        self.ns.write(&self.ctx, n, off, data)
    }

    pub fn segment(&mut self, name: &str, len: u64) {
        let mut dir = self.walk(&["segment"]).expect("segment");
        self.ns
            .create(&self.ctx, &mut dir, name, protocol::dm::DIR | 0o777, 0)
            .expect("create");
        let mut ctl = self.open(&["segment", name, "ctl"], 2);
        let va = format!("va 0x10000000 {len:#x}");
        self.write(&mut ctl, 0, va.as_bytes()).expect("size");
    }

    /// VM 0 with `devices pic pci`, its 32 KiB of RAM segment `ram` mapped whole and rwx,
    /// or with `holes` mapped with holes and a read-only range; segment `other` (a page
    /// of 0x77) exists but is not mapped. Returns the VM's ctl and `other`'s data.
    pub fn vm(&mut self, holes: bool) -> (Node, Node) {
        self.segment("ram", RAM as u64);
        self.segment("other", 0x1000);
        let mut other = self.open(&["segment", "other", "data"], 2);
        self.write(&mut other, 0, &[0x77; 0x1000]).expect("fill");
        let mut ctl = self.open(&["vmx", "clone"], 2);
        let mut map = self.open(&["vmx", "0", "map"], 2);
        let lines: &[u8] = if holes {
            b"rw- wb 0 0x5000 ram 0\nr-- wb 0x6000 0x7000 ram 0x6000\n"
        } else {
            b"rwx wb 0 0x8000 ram 0\n"
        };
        self.write(&mut map, 0, lines).expect("map");
        self.write(&mut ctl, 0, b"devices pic pci")
            .expect("devices");
        (ctl, other)
    }

    /// The guest makes `exits`, then one for its client.
    pub fn run(&mut self, ctl: &mut Node, exits: &[Exit]) {
        self.ns.hw_mut().exits.extend(exits.iter().cloned());
        self.ns.hw_mut().exits.push_back(Exit::new(10));
        if self.write(ctl, 0, b"go").is_ok() {
            for _ in 0..4 {
                self.ns.run_guests();
            }
        }
        self.ns.hw_mut().exits.clear();
    }

    /// Segment `other` still holds only 0x77 (`buf` is at least a page).
    pub fn other_untouched(&mut self, other: &mut Node, buf: &mut [u8]) {
        match self.ns.read(&self.ctx, other, 0, &mut buf[..0x1000]) {
            Ok(Read::Done(n)) => assert!(
                buf[..n].iter().all(|&b| b == 0x77),
                "a segment the VM does not map changed"
            ),
            r => panic!("reading the other segment: {r:?}"),
        }
    }

    /// Removes the segments named that exist; then every frame must be free again.
    pub fn release(&mut self, segments: &[&str]) {
        for s in segments {
            if let Some(d) = self.walk(&["segment", s]) {
                self.ns.remove(&self.ctx, &d).expect("remove segment");
            }
        }
        assert_eq!(self.ns.hw().frames_free(), self.start, "frames leaked");
    }
}
