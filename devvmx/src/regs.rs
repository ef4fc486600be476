//! The `regs` file: the seed's guestregs table, read in its order and format, written as
//! `name value` lines (and as `name=value;` in `go`/`step`).

use crate::hw::{EntryState, Hw};
use crate::plan9::{getfields, hexw, records, strtoull_whole, Tail};
use crate::vmcs::{self, *};
use alloc::string::String;
use ninep::Error;

/// Where a register lives: a VMCS field or the VM's own state.
#[derive(Clone, Copy, Debug)]
enum Loc {
    Vmcs(VmcsField),
    /// GuestRegs by position: ax bx cx dx bp si di r8..r15.
    Ureg(usize),
    Cr2,
    Dr(usize),
    Xcr0,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rd {
    Plain,
    Cr0Fake,
    Cr4Fake,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Wr {
    Plain,
    Cr0Real,
    Cr0Mask,
    Efer,
    Cr4Real,
    Cr4Mask,
    Dr7,
    Dr6,
    Xcr0,
    Readonly,
}

struct GuestReg {
    loc: Loc,
    /// In bytes; printed with twice as many hex digits.
    size: usize,
    name: &'static str,
    rd: Rd,
    wr: Wr,
}

const fn r(loc: Loc, size: usize, name: &'static str) -> GuestReg {
    GuestReg {
        loc,
        size,
        name,
        rd: Rd::Plain,
        wr: Wr::Plain,
    }
}

const fn rw(loc: Loc, size: usize, name: &'static str, rd: Rd, wr: Wr) -> GuestReg {
    GuestReg {
        loc,
        size,
        name,
        rd,
        wr,
    }
}

use Loc::{Vmcs as V, *};

/// The seed's guestregs[], amd64 (RMACH) edition; size 0 there is 8 here.
static GUESTREGS: [GuestReg; 82] = [
    r(V(GUEST_RIP), 8, "pc"),
    r(V(GUEST_RSP), 8, "sp"),
    r(V(GUEST_RFLAGS), 8, "flags"),
    r(Ureg(0), 8, "ax"),
    r(Ureg(1), 8, "bx"),
    r(Ureg(2), 8, "cx"),
    r(Ureg(3), 8, "dx"),
    r(Ureg(4), 8, "bp"),
    r(Ureg(5), 8, "si"),
    r(Ureg(6), 8, "di"),
    r(Ureg(7), 8, "r8"),
    r(Ureg(8), 8, "r9"),
    r(Ureg(9), 8, "r10"),
    r(Ureg(10), 8, "r11"),
    r(Ureg(11), 8, "r12"),
    r(Ureg(12), 8, "r13"),
    r(Ureg(13), 8, "r14"),
    r(Ureg(14), 8, "r15"),
    r(V(GUEST_GDTRBASE), 8, "gdtrbase"),
    r(V(GUEST_GDTRLIMIT), 4, "gdtrlimit"),
    r(V(GUEST_IDTRBASE), 8, "idtrbase"),
    r(V(GUEST_IDTRLIMIT), 4, "idtrlimit"),
    r(V(GUEST_CS), 2, "cs"),
    r(V(GUEST_CSBASE), 8, "csbase"),
    r(V(GUEST_CSLIMIT), 4, "cslimit"),
    r(V(GUEST_CSPERM), 4, "csperm"),
    r(V(GUEST_DS), 2, "ds"),
    r(V(GUEST_DSBASE), 8, "dsbase"),
    r(V(GUEST_DSLIMIT), 4, "dslimit"),
    r(V(GUEST_DSPERM), 4, "dsperm"),
    r(V(GUEST_ES), 2, "es"),
    r(V(GUEST_ESBASE), 8, "esbase"),
    r(V(GUEST_ESLIMIT), 4, "eslimit"),
    r(V(GUEST_ESPERM), 4, "esperm"),
    r(V(GUEST_FS), 2, "fs"),
    r(V(GUEST_FSBASE), 8, "fsbase"),
    r(V(GUEST_FSLIMIT), 4, "fslimit"),
    r(V(GUEST_FSPERM), 4, "fsperm"),
    r(V(GUEST_GS), 2, "gs"),
    r(V(GUEST_GSBASE), 8, "gsbase"),
    r(V(GUEST_GSLIMIT), 4, "gslimit"),
    r(V(GUEST_GSPERM), 4, "gsperm"),
    r(V(GUEST_SS), 2, "ss"),
    r(V(GUEST_SSBASE), 8, "ssbase"),
    r(V(GUEST_SSLIMIT), 4, "sslimit"),
    r(V(GUEST_SSPERM), 4, "ssperm"),
    r(V(GUEST_TR), 2, "tr"),
    r(V(GUEST_TRBASE), 8, "trbase"),
    r(V(GUEST_TRLIMIT), 4, "trlimit"),
    r(V(GUEST_TRPERM), 4, "trperm"),
    r(V(GUEST_LDTR), 2, "ldtr"),
    r(V(GUEST_LDTRBASE), 8, "ldtrbase"),
    r(V(GUEST_LDTRLIMIT), 4, "ldtrlimit"),
    r(V(GUEST_LDTRPERM), 4, "ldtrperm"),
    rw(V(GUEST_CR0), 8, "cr0real", Rd::Plain, Wr::Cr0Real),
    rw(V(GUEST_CR0SHADOW), 8, "cr0fake", Rd::Cr0Fake, Wr::Plain),
    rw(V(GUEST_CR0MASK), 8, "cr0mask", Rd::Plain, Wr::Cr0Mask),
    r(Cr2, 8, "cr2"),
    r(V(GUEST_CR3), 8, "cr3"),
    rw(V(GUEST_CR4), 8, "cr4real", Rd::Plain, Wr::Cr4Real),
    rw(V(GUEST_CR4SHADOW), 8, "cr4fake", Rd::Cr4Fake, Wr::Plain),
    rw(V(GUEST_CR4MASK), 8, "cr4mask", Rd::Plain, Wr::Cr4Mask),
    r(V(GUEST_IA32_PAT), 8, "pat"),
    rw(V(GUEST_IA32_EFER), 8, "efer", Rd::Plain, Wr::Efer),
    r(Dr(0), 8, "dr0"),
    r(Dr(1), 8, "dr1"),
    r(Dr(2), 8, "dr2"),
    r(Dr(3), 8, "dr3"),
    rw(Dr(6), 8, "dr6", Rd::Plain, Wr::Dr6),
    rw(Xcr0, 8, "xcr0", Rd::Plain, Wr::Xcr0),
    rw(V(GUEST_DR7), 8, "dr7", Rd::Plain, Wr::Dr7),
    rw(
        V(VM_INSTRERR),
        4,
        "instructionerror",
        Rd::Plain,
        Wr::Readonly,
    ),
    rw(V(VM_EXREASON), 4, "exitreason", Rd::Plain, Wr::Readonly),
    rw(
        V(VM_EXQUALIF),
        8,
        "exitqualification",
        Rd::Plain,
        Wr::Readonly,
    ),
    rw(
        V(VM_EXINTRINFO),
        4,
        "exitinterruptinfo",
        Rd::Plain,
        Wr::Readonly,
    ),
    rw(
        V(VM_EXINTRCODE),
        4,
        "exitinterruptcode",
        Rd::Plain,
        Wr::Readonly,
    ),
    rw(
        V(VM_EXINSTRLEN),
        4,
        "exitinstructionlen",
        Rd::Plain,
        Wr::Readonly,
    ),
    rw(
        V(VM_EXINSTRINFO),
        4,
        "exitinstructioninfo",
        Rd::Plain,
        Wr::Readonly,
    ),
    rw(V(VM_GUESTVA), 8, "exitva", Rd::Plain, Wr::Readonly),
    rw(V(VM_GUESTPA), 8, "exitpa", Rd::Plain, Wr::Readonly),
    rw(
        V(VM_IDTVECINFO),
        4,
        "idtinterruptinfo",
        Rd::Plain,
        Wr::Readonly,
    ),
    rw(
        V(VM_IDTVECCODE),
        4,
        "idtinterruptcode",
        Rd::Plain,
        Wr::Readonly,
    ),
];

fn ureg(st: &mut EntryState, i: usize) -> &mut u64 {
    let g = &mut st.regs;
    match i {
        0 => &mut g.ax,
        1 => &mut g.bx,
        2 => &mut g.cx,
        3 => &mut g.dx,
        4 => &mut g.bp,
        5 => &mut g.si,
        6 => &mut g.di,
        7 => &mut g.r8,
        8 => &mut g.r9,
        9 => &mut g.r10,
        10 => &mut g.r11,
        11 => &mut g.r12,
        12 => &mut g.r13,
        13 => &mut g.r14,
        _ => &mut g.r15,
    }
}

fn var(st: &mut EntryState, loc: Loc) -> Option<&mut u64> {
    match loc {
        Loc::Vmcs(_) => None,
        Ureg(i) => Some(ureg(st, i)),
        Cr2 => Some(&mut st.cr2),
        Dr(i) => st.dr.get_mut(i),
        Xcr0 => Some(&mut st.xcr0),
    }
}

fn load<H: Hw>(hw: &mut H, st: &mut EntryState, loc: Loc) -> Result<u64, Error> {
    match loc {
        Loc::Vmcs(f) => vmcs::read(hw, f),
        _ => Ok(var(st, loc).map_or(0, |v| *v)),
    }
}

/// cmdgetregs: every register, one `name 0x...` line each.
/// `exit` overrides VMCS fields (a synthesized exit's reason and qualification).
pub fn getregs<H: Hw>(
    hw: &mut H,
    st: &mut EntryState,
    exit: &[(VmcsField, u64)],
) -> Result<String, Error> {
    let mut s = String::new();
    for r in &GUESTREGS {
        let over = match r.loc {
            Loc::Vmcs(f) => exit.iter().find(|(k, _)| *k == f).map(|&(_, v)| v),
            _ => None,
        };
        let v = match (over, r.rd) {
            (Some(v), _) => v,
            (None, Rd::Plain) => load(hw, st, r.loc)?,
            (None, Rd::Cr0Fake) => fake(hw, GUEST_CR0, GUEST_CR0MASK, GUEST_CR0SHADOW)?,
            (None, Rd::Cr4Fake) => fake(hw, GUEST_CR4, GUEST_CR4MASK, GUEST_CR4SHADOW)?,
        };
        s.push_str(r.name);
        s.push(' ');
        s.push_str(&hexw(v, r.size * 2));
        s.push('\n');
    }
    Ok(s)
}

/// One register of the regs file by name, as a read of the file gives it.
pub fn getreg<H: Hw>(hw: &mut H, st: &mut EntryState, name: &str) -> Result<u64, Error> {
    let r = GUESTREGS
        .iter()
        .find(|r| r.name == name)
        .ok_or(Error::from("unknown register"))?;
    match r.rd {
        Rd::Plain => load(hw, st, r.loc),
        Rd::Cr0Fake => fake(hw, GUEST_CR0, GUEST_CR0MASK, GUEST_CR0SHADOW),
        Rd::Cr4Fake => fake(hw, GUEST_CR4, GUEST_CR4MASK, GUEST_CR4SHADOW),
    }
}

/// What the guest reads from a control register: shadow bits where the mask owns them.
fn fake<H: Hw>(
    hw: &mut H,
    real: VmcsField,
    mask: VmcsField,
    shadow: VmcsField,
) -> Result<u64, Error> {
    let g = vmcs::read(hw, real)?;
    let m = vmcs::read(hw, mask)?;
    let s = vmcs::read(hw, shadow)?;
    Ok(g & !m | s & m)
}

fn parseval(s: &str) -> Result<u64, Error> {
    strtoull_whole(s).ok_or_else(|| "invalid value".into())
}

/// updatelma: EFER.LMA = LME && CR0.PG, and the IA-32e mode guest entry control with it.
fn updatelma<H: Hw>(hw: &mut H) -> Result<(), Error> {
    let cr0 = vmcs::read(hw, GUEST_CR0)?;
    let efer = vmcs::read(hw, GUEST_IA32_EFER)?;
    let nefer = efer & !0x400 | efer << 2 & cr0 >> 21 & 0x400;
    if efer == nefer {
        return Ok(());
    }
    vmcs::write(hw, GUEST_IA32_EFER, nefer)?;
    let ectrl = vmcs::read(hw, VMENTRY_CTLS)?;
    let guest64 = VMENTRY_GUEST64 as u64;
    vmcs::write(hw, VMENTRY_CTLS, ectrl & !guest64 | nefer >> 1 & guest64)
}

/// Sets one register by name, with the seed's special rules.
pub fn setreg<H: Hw>(hw: &mut H, st: &mut EntryState, name: &str, val: &str) -> Result<(), Error> {
    let Some(r) = GUESTREGS.iter().find(|r| r.name == name) else {
        return Err("unknown register".into());
    };
    match r.wr {
        Wr::Plain => {
            let v = parseval(val)?;
            match r.loc {
                Loc::Vmcs(f) => vmcs::write(hw, f, v)?,
                loc => {
                    if let Some(x) = var(st, loc) {
                        *x = v;
                    }
                }
            }
        }
        Wr::Cr0Real => {
            let v = parseval(val)?;
            let cur = vmcs::read(hw, GUEST_CR0)?;
            vmcs::write(hw, GUEST_CR0, cur & CR0KERNEL | v & !CR0KERNEL)?;
            updatelma(hw)?;
        }
        Wr::Cr0Mask => vmcs::write(hw, GUEST_CR0MASK, parseval(val)? | CR0KERNEL)?,
        Wr::Efer => {
            vmcs::write(hw, GUEST_IA32_EFER, parseval(val)?)?;
            updatelma(hw)?;
        }
        Wr::Cr4Real => {
            let v = parseval(val)?;
            let cur = vmcs::read(hw, GUEST_CR4)?;
            vmcs::write(hw, GUEST_CR4, cur & CR4KERNEL | v & !CR4KERNEL)?;
        }
        Wr::Cr4Mask => vmcs::write(hw, GUEST_CR4MASK, parseval(val)? | CR4KERNEL)?,
        Wr::Dr7 => {
            let v = parseval(val)? as u32 as u64;
            st.dr[7] = v;
            vmcs::write(hw, GUEST_DR7, v)?;
        }
        Wr::Dr6 => st.dr[6] = parseval(val)? as u32 as u64,
        Wr::Xcr0 => st.xcr0 = (parseval(val)? | 1) & hw.host_xcr0(),
        // The seed's readonly() returned -1, which setregs ignored.
        Wr::Readonly => return Err("register is read-only".into()),
    }
    Ok(())
}

/// setregs: records ended by `rs`, each split into fields at any of `fs`; a record must
/// have two fields. Returns the bytes consumed ([`records`] decides what a last record
/// without its `rs` does). Records before an error stay applied.
pub fn setregs<H: Hw>(
    hw: &mut H,
    st: &mut EntryState,
    data: &[u8],
    rs: u8,
    fs: &[char],
    tail: Tail,
) -> Result<usize, Error> {
    let (recs, n) = records(data, rs, tail);
    for rec in recs {
        let line = String::from_utf8_lossy(rec);
        let (nf, f) = getfields(&line, 10, fs);
        if nf == 0 {
            continue;
        }
        if nf != 2 {
            return Err("number of fields wrong".into());
        }
        setreg(hw, st, f[0], f[1])?;
    }
    Ok(n)
}
