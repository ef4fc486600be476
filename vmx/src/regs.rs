//! A cache of the guest's registers, as vmx(1) keeps one: values the wait line carries
//! (pc, sp, ax) are known without a round trip, the regs file is read whole only when a
//! handler needs another register, and changed registers ride on the next `go`
//! (`go name=value;name=value;`) instead of costing a write each.
//!
//! Registers are named by [`Reg`], the regs file's names as a type (a test checks them
//! against devvmx's table), so a misspelt name does not compile.

use crate::layout::parse_u64;
use std::collections::BTreeMap;

macro_rules! regs {
    ($($r:ident = $name:literal,)*) => {
        /// A register of #X's regs file, in the file's order (devvmx's `GUESTREGS`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reg {
            $($r,)*
        }

        impl Reg {
            /// Every register, in the regs file's order.
            pub const ALL: &'static [Reg] = &[$(Reg::$r,)*];

            /// The register's name in the regs file, in `go` and in wait lines.
            pub fn name(self) -> &'static str {
                match self {
                    $(Reg::$r => $name,)*
                }
            }
        }
    };
}

regs! {
    Pc = "pc", Sp = "sp", Flags = "flags",
    Ax = "ax", Bx = "bx", Cx = "cx", Dx = "dx", Bp = "bp", Si = "si", Di = "di",
    R8 = "r8", R9 = "r9", R10 = "r10", R11 = "r11", R12 = "r12", R13 = "r13", R14 = "r14",
    R15 = "r15",
    GdtrBase = "gdtrbase", GdtrLimit = "gdtrlimit", IdtrBase = "idtrbase",
    IdtrLimit = "idtrlimit",
    Cs = "cs", CsBase = "csbase", CsLimit = "cslimit", CsPerm = "csperm",
    Ds = "ds", DsBase = "dsbase", DsLimit = "dslimit", DsPerm = "dsperm",
    Es = "es", EsBase = "esbase", EsLimit = "eslimit", EsPerm = "esperm",
    Fs = "fs", FsBase = "fsbase", FsLimit = "fslimit", FsPerm = "fsperm",
    Gs = "gs", GsBase = "gsbase", GsLimit = "gslimit", GsPerm = "gsperm",
    Ss = "ss", SsBase = "ssbase", SsLimit = "sslimit", SsPerm = "ssperm",
    Tr = "tr", TrBase = "trbase", TrLimit = "trlimit", TrPerm = "trperm",
    Ldtr = "ldtr", LdtrBase = "ldtrbase", LdtrLimit = "ldtrlimit", LdtrPerm = "ldtrperm",
    Cr0Real = "cr0real", Cr0Fake = "cr0fake", Cr0Mask = "cr0mask", Cr2 = "cr2", Cr3 = "cr3",
    Cr4Real = "cr4real", Cr4Fake = "cr4fake", Cr4Mask = "cr4mask",
    Pat = "pat", Efer = "efer",
    Dr0 = "dr0", Dr1 = "dr1", Dr2 = "dr2", Dr3 = "dr3", Dr6 = "dr6", Xcr0 = "xcr0", Dr7 = "dr7",
    InstructionError = "instructionerror", ExitReason = "exitreason",
    ExitQualification = "exitqualification", ExitInterruptInfo = "exitinterruptinfo",
    ExitInterruptCode = "exitinterruptcode", ExitInstructionLen = "exitinstructionlen",
    ExitInstructionInfo = "exitinstructioninfo", ExitVa = "exitva", ExitPa = "exitpa",
    IdtInterruptInfo = "idtinterruptinfo", IdtInterruptCode = "idtinterruptcode",
}

impl Reg {
    /// The register named `name` in the regs file, if the tool knows it.
    pub fn from_name(name: &str) -> Option<Reg> {
        Reg::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// The general-purpose registers in the encoding of instructions and exit
    /// qualifications (0 ax, 1 cx, 2 dx, 3 bx, 4 sp, ...).
    pub const GPR: [Reg; 16] = [
        Reg::Ax,
        Reg::Cx,
        Reg::Dx,
        Reg::Bx,
        Reg::Sp,
        Reg::Bp,
        Reg::Si,
        Reg::Di,
        Reg::R8,
        Reg::R9,
        Reg::R10,
        Reg::R11,
        Reg::R12,
        Reg::R13,
        Reg::R14,
        Reg::R15,
    ];
}

#[derive(Clone, Debug, Default)]
pub struct Regs {
    /// Known values.
    val: BTreeMap<Reg, u64>,
    /// Registers changed since the last `go`, in the order they were set.
    dirty: Vec<Reg>,
}

impl Regs {
    pub fn new() -> Regs {
        Regs::default()
    }

    pub fn known(&self, r: Reg) -> Option<u64> {
        self.val.get(&r).copied()
    }

    /// A value the hypervisor reported (wait line): known, not to be written back.
    pub fn poke(&mut self, r: Reg, v: u64) {
        if !self.dirty.contains(&r) {
            self.val.insert(r, v);
        }
    }

    /// A value the tool changed: written with the next `go`.
    pub fn set(&mut self, r: Reg, v: u64) {
        self.val.insert(r, v);
        if !self.dirty.contains(&r) {
            self.dirty.push(r);
        }
    }

    /// Takes in the text of the regs file (`name value` lines); registers the tool has
    /// changed keep the tool's value, and names the tool does not know are passed over.
    pub fn load(&mut self, text: &str) -> Result<(), String> {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(n), Some(v)) = (f.next(), f.next()) else {
                continue;
            };
            let v = parse_u64(v).ok_or_else(|| format!("bad value in regs: {line:?}"))?;
            if let Some(r) = Reg::from_name(n) {
                self.poke(r, v);
            }
        }
        Ok(())
    }

    /// The argument of `go` for the changed registers ("" if none), and forgets every
    /// value: once the guest runs, all of them may change.
    pub fn take_go(&mut self) -> String {
        let mut s = String::new();
        for r in self.dirty.drain(..) {
            if let Some(v) = self.val.get(&r) {
                s.push_str(&format!("{}={v:#x};", r.name()));
            }
        }
        self.val.clear();
        s
    }

    /// The changed registers as regs-file lines (for writing outside a `go`), marking
    /// them clean.
    pub fn take_lines(&mut self) -> String {
        let mut s = String::new();
        for r in self.dirty.drain(..) {
            if let Some(v) = self.val.get(&r) {
                s.push_str(&format!("{} {v:#x}\n", r.name()));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_carries_changes_only() {
        let mut r = Regs::new();
        r.poke(Reg::Pc, 0x1000);
        r.poke(Reg::Ax, 5);
        assert_eq!(r.take_go(), "");
        r.poke(Reg::Pc, 0x1000);
        r.set(Reg::Pc, 0x1002);
        r.set(Reg::Ax, 0x41);
        r.set(Reg::Pc, 0x1003);
        assert_eq!(r.known(Reg::Pc), Some(0x1003));
        assert_eq!(r.take_go(), "pc=0x1003;ax=0x41;");
        assert_eq!(r.known(Reg::Pc), None);
    }

    #[test]
    fn load_keeps_dirty_values() {
        let mut r = Regs::new();
        r.set(Reg::Ax, 7);
        r.load("pc 0x0000000000100000\nax 0x0000000000000001\ncs 0x0010\nbogus\n")
            .unwrap();
        assert_eq!(r.known(Reg::Ax), Some(7));
        assert_eq!(r.known(Reg::Pc), Some(0x100000));
        assert_eq!(r.known(Reg::Cs), Some(0x10));
        assert!(r.load("pc zz").is_err());
        assert_eq!(r.take_lines(), "ax 0x7\n");
        assert_eq!(r.take_go(), "");
    }

    /// The names are devvmx's, in its order: a fresh VM's regs file, read through 9P
    /// from devvmx's namespace over its TestHw double, names exactly [`Reg::ALL`]; and
    /// the MSRs the guest reaches through registers (pcdev's table) name registers here.
    #[test]
    fn names_are_the_regs_files() {
        use devvmx::testhw::TestHw;
        use devvmx::{Config, Namespace};
        use ninep::testing::{Client, R};
        use ninep_client::om;
        let ns = Namespace::new(
            TestHw::new(4096),
            Config {
                owner: "eve".into(),
                version: "test",
            },
        );
        let mut c = Client::connect(ns);
        assert!(matches!(c.version(8192 + 24), R::Version(..)));
        assert!(matches!(c.attach(0, "eve", ""), R::Open(_)));
        let clone = c.open_path("vmx/clone", om::RDWR).unwrap();
        let R::Data(n) = c.read(clone, 0, 100) else {
            panic!("read vmx/clone")
        };
        let n = String::from_utf8(n).unwrap();
        let text = c.read_text(&format!("vmx/{}/regs", n.trim()));
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let ours: Vec<&str> = Reg::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, ours);
        for idx in 0..=u32::MAX >> 20 {
            for i in [idx, 0xc000_0000 | idx] {
                if let Some(pcdev::cpu::Msr::Reg(n)) = pcdev::cpu::msr(i) {
                    assert!(Reg::from_name(n).is_some(), "MSR {i:#x}: {n}");
                }
            }
        }
    }
}
