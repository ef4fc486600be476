//! Everything that parses guest or user input answers every input with a value or an
//! error, never a panic: loaders on mutated real images, wait lines, regs text, and the
//! device models under random port traffic. Seeded, so a failure reproduces.

use vmx::dev::Machine;
use vmx::exit::Exit;
use vmx::layout::Layout;
use vmx::loader::{self, BootArgs, Module};
use vmx::regs::Regs;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn mutate(r: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    match r.below(4) {
        0 => {
            let n = r.below(v.len() as u64 + 1) as usize;
            v.truncate(n);
        }
        1 => v.extend((0..r.below(64)).map(|_| r.next() as u8)),
        _ => {}
    }
    for _ in 0..r.below(8) + 1 {
        if v.is_empty() {
            break;
        }
        let i = r.below(v.len() as u64) as usize;
        v[i] = match r.below(4) {
            0 => 0,
            1 => 0xff,
            _ => r.next() as u8,
        };
    }
    v
}

/// A bzImage-shaped header with a small kernel, for mutation.
fn bzimage() -> Vec<u8> {
    let mut k = vec![0u8; 3 * 512];
    k[0x1f1] = 2;
    k[0x1f4..0x1f8].copy_from_slice(&10u32.to_le_bytes());
    k[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    k[0x201] = 0x66;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    k[0x211] = 1;
    k[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes());
    k[0x238..0x23c].copy_from_slice(&255u32.to_le_bytes());
    k.extend_from_slice(&[0x90; 160]);
    k
}

#[test]
fn loaders_never_panic() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let bases = [vmx::demo::IMAGE.to_vec(), bzimage(), vec![0u8; 600]];
    let layouts = [
        Layout::new(1 << 20).unwrap(),
        Layout::new(4 << 20).unwrap(),
        Layout::new(64 << 20).unwrap(),
    ];
    for i in 0..20_000 {
        let k = mutate(&mut r, &bases[i % bases.len()]);
        let l = &layouts[r.below(3) as usize];
        let args = BootArgs {
            cmdline: "x".repeat(r.below(300) as usize),
            modules: (0..r.below(3))
                .map(|_| Module {
                    name: "m".into(),
                    data: vec![1; r.below(5000) as usize],
                })
                .collect(),
        };
        if let Ok(img) = loader::load(&k, l, &args) {
            // Whatever loads fits in guest memory.
            for c in &img.chunks {
                assert!(
                    l.contains(c.addr, c.data.len() as u64),
                    "{c:?} outside {:#x}",
                    l.mem()
                );
            }
        }
        let _ = loader::load_raw(&k, r.next() % (2 << 20), l);
    }
}

#[test]
fn wait_lines_and_regs_never_panic() {
    let mut r = Rng(42);
    let words = [
        "io",
        "pc",
        "sp",
        "ax",
        "ilen",
        "iinfo",
        "pa",
        "va",
        "*ack",
        "0x",
        "0x10",
        "-1",
        "99999999999999999999999",
        "",
        "\n",
        "\0",
        " ",
    ];
    for _ in 0..20_000 {
        let s: String = (0..r.below(12))
            .map(|_| words[r.below(words.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ");
        let _ = Exit::parse(&s);
        let mut g = Regs::new();
        let _ = g.load(&s.replace(' ', "\n"));
        let bytes: Vec<u8> = (0..r.below(40)).map(|_| r.next() as u8).collect();
        let _ = Exit::parse(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn devices_never_panic() {
    let mut r = Rng(7);
    let mut m = Machine::new(&Layout::new(64 << 20).unwrap());
    let ports: [u16; 24] = [
        0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71, 0x60, 0x64,
        0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0xcf8, 0xcfc, 0xcfe,
    ];
    let mut now = 0u64;
    for _ in 0..200_000 {
        let port = if r.below(10) == 0 {
            r.next() as u16
        } else {
            ports[r.below(ports.len() as u64) as usize]
        };
        let size = [1, 2, 4][r.below(3) as usize];
        if r.below(2) == 0 {
            let v = m.io_in(port, size);
            assert!(size == 4 || v >> (8 * size) == 0);
        } else {
            m.io_out(port, size, r.next() as u32);
        }
        now += r.below(2_000_000);
        m.advance(now, r.next() as i64 >> 20);
        let _ = m.irq_command();
        if r.below(5) == 0 {
            m.irq_ack(r.next() as u8);
        }
        if r.below(50) == 0 {
            m.type_in(&[r.next() as u8]);
        }
        let _ = m.take_output();
        let _ = m.deadline();
    }
}
