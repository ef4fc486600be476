//! The `regs` file: the seed's guestregs table, read in its order and format, written as
//! `name value` lines (and as `name=value;` in `go`/`step`).

use crate::caps::{Caps, EBADCR0, EBADCR4};
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
    name: &'static str,
    rd: Rd,
    wr: Wr,
}

const fn r(loc: Loc, name: &'static str) -> GuestReg {
    GuestReg {
        loc,
        name,
        rd: Rd::Plain,
        wr: Wr::Plain,
    }
}

const fn rw(loc: Loc, name: &'static str, rd: Rd, wr: Wr) -> GuestReg {
    GuestReg { loc, name, rd, wr }
}

/// A register the client may read but not set.
const fn ro(loc: Loc, name: &'static str) -> GuestReg {
    rw(loc, name, Rd::Plain, Wr::Readonly)
}

impl GuestReg {
    /// In bytes, printed with twice as many hex digits: a VMCS field's width, or 8 for
    /// the VM's own state.
    fn size(&self) -> usize {
        match self.loc {
            Loc::Vmcs(f) => f.width().bytes(),
            _ => 8,
        }
    }
}

use Loc::{Vmcs as V, *};

/// The seed's guestregs[], amd64 (RMACH) edition; sizes come from [`GuestReg::size`].
static GUESTREGS: [GuestReg; 82] = [
    r(V(GUEST_RIP), "pc"),
    r(V(GUEST_RSP), "sp"),
    r(V(GUEST_RFLAGS), "flags"),
    r(Ureg(0), "ax"),
    r(Ureg(1), "bx"),
    r(Ureg(2), "cx"),
    r(Ureg(3), "dx"),
    r(Ureg(4), "bp"),
    r(Ureg(5), "si"),
    r(Ureg(6), "di"),
    r(Ureg(7), "r8"),
    r(Ureg(8), "r9"),
    r(Ureg(9), "r10"),
    r(Ureg(10), "r11"),
    r(Ureg(11), "r12"),
    r(Ureg(12), "r13"),
    r(Ureg(13), "r14"),
    r(Ureg(14), "r15"),
    r(V(GUEST_GDTRBASE), "gdtrbase"),
    r(V(GUEST_GDTRLIMIT), "gdtrlimit"),
    r(V(GUEST_IDTRBASE), "idtrbase"),
    r(V(GUEST_IDTRLIMIT), "idtrlimit"),
    r(V(GUEST_CS), "cs"),
    r(V(GUEST_CSBASE), "csbase"),
    r(V(GUEST_CSLIMIT), "cslimit"),
    r(V(GUEST_CSPERM), "csperm"),
    r(V(GUEST_DS), "ds"),
    r(V(GUEST_DSBASE), "dsbase"),
    r(V(GUEST_DSLIMIT), "dslimit"),
    r(V(GUEST_DSPERM), "dsperm"),
    r(V(GUEST_ES), "es"),
    r(V(GUEST_ESBASE), "esbase"),
    r(V(GUEST_ESLIMIT), "eslimit"),
    r(V(GUEST_ESPERM), "esperm"),
    r(V(GUEST_FS), "fs"),
    r(V(GUEST_FSBASE), "fsbase"),
    r(V(GUEST_FSLIMIT), "fslimit"),
    r(V(GUEST_FSPERM), "fsperm"),
    r(V(GUEST_GS), "gs"),
    r(V(GUEST_GSBASE), "gsbase"),
    r(V(GUEST_GSLIMIT), "gslimit"),
    r(V(GUEST_GSPERM), "gsperm"),
    r(V(GUEST_SS), "ss"),
    r(V(GUEST_SSBASE), "ssbase"),
    r(V(GUEST_SSLIMIT), "sslimit"),
    r(V(GUEST_SSPERM), "ssperm"),
    r(V(GUEST_TR), "tr"),
    r(V(GUEST_TRBASE), "trbase"),
    r(V(GUEST_TRLIMIT), "trlimit"),
    r(V(GUEST_TRPERM), "trperm"),
    r(V(GUEST_LDTR), "ldtr"),
    r(V(GUEST_LDTRBASE), "ldtrbase"),
    r(V(GUEST_LDTRLIMIT), "ldtrlimit"),
    r(V(GUEST_LDTRPERM), "ldtrperm"),
    rw(V(GUEST_CR0), "cr0real", Rd::Plain, Wr::Cr0Real),
    rw(V(GUEST_CR0SHADOW), "cr0fake", Rd::Cr0Fake, Wr::Plain),
    rw(V(GUEST_CR0MASK), "cr0mask", Rd::Plain, Wr::Cr0Mask),
    r(Cr2, "cr2"),
    r(V(GUEST_CR3), "cr3"),
    rw(V(GUEST_CR4), "cr4real", Rd::Plain, Wr::Cr4Real),
    rw(V(GUEST_CR4SHADOW), "cr4fake", Rd::Cr4Fake, Wr::Plain),
    rw(V(GUEST_CR4MASK), "cr4mask", Rd::Plain, Wr::Cr4Mask),
    r(V(GUEST_IA32_PAT), "pat"),
    rw(V(GUEST_IA32_EFER), "efer", Rd::Plain, Wr::Efer),
    r(Dr(0), "dr0"),
    r(Dr(1), "dr1"),
    r(Dr(2), "dr2"),
    r(Dr(3), "dr3"),
    rw(Dr(6), "dr6", Rd::Plain, Wr::Dr6),
    rw(Xcr0, "xcr0", Rd::Plain, Wr::Xcr0),
    rw(V(GUEST_DR7), "dr7", Rd::Plain, Wr::Dr7),
    ro(V(VM_INSTRERR), "instructionerror"),
    ro(V(VM_EXREASON), "exitreason"),
    ro(V(VM_EXQUALIF), "exitqualification"),
    ro(V(VM_EXINTRINFO), "exitinterruptinfo"),
    ro(V(VM_EXINTRCODE), "exitinterruptcode"),
    ro(V(VM_EXINSTRLEN), "exitinstructionlen"),
    ro(V(VM_EXINSTRINFO), "exitinstructioninfo"),
    ro(V(VM_GUESTVA), "exitva"),
    ro(V(VM_GUESTPA), "exitpa"),
    ro(V(VM_IDTVECINFO), "idtinterruptinfo"),
    ro(V(VM_IDTVECCODE), "idtinterruptcode"),
];

/// The general-purpose registers by their number in instructions and exit qualifications
/// ([`MovDrQual::gpr`]), as the regs file names them.
pub(crate) const GPR: [&str; 16] = [
    "ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
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
pub(crate) fn getregs<H: Hw>(
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
        s.push_str(&hexw(v, r.size() * 2));
        s.push('\n');
    }
    Ok(s)
}

/// One register of the regs file by name, as a read of the file gives it.
pub(crate) fn getreg<H: Hw>(hw: &mut H, st: &mut EntryState, name: &str) -> Result<u64, Error> {
    let r = find(name)?;
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
    let nefer = efer & !EFER_LMA | efer << 2 & cr0 >> 21 & EFER_LMA;
    if efer == nefer {
        return Ok(());
    }
    vmcs::write(hw, GUEST_IA32_EFER, nefer)?;
    let ectrl = vmcs::read(hw, VMENTRY_CTLS)?;
    let guest64 = VMENTRY_GUEST64 as u64;
    vmcs::write(hw, VMENTRY_CTLS, ectrl & !guest64 | nefer >> 1 & guest64)
}

/// Sets one register by name, with the seed's special rules.
pub(crate) fn setreg<H: Hw>(
    hw: &mut H,
    st: &mut EntryState,
    caps: &Caps,
    name: &str,
    val: &str,
) -> Result<(), Error> {
    let r = find(name)?;
    // A read-only register's error comes before the value's.
    let v = match r.wr {
        Wr::Readonly => 0,
        _ => parseval(val)?,
    };
    set(hw, st, caps, r, v)
}

/// Sets one register by name to `v` as a write of the regs file would (its checks and
/// side effects: EFER.LMA, DR7 in the VMCS, ...): the in-kernel `cpu` device's MSR and
/// debug register writes.
pub(crate) fn setreg_value<H: Hw>(
    hw: &mut H,
    st: &mut EntryState,
    caps: &Caps,
    name: &str,
    v: u64,
) -> Result<(), Error> {
    set(hw, st, caps, find(name)?, v)
}

fn find(name: &str) -> Result<&'static GuestReg, Error> {
    GUESTREGS
        .iter()
        .find(|r| r.name == name)
        .ok_or(Error::from("unknown register"))
}

fn set<H: Hw>(
    hw: &mut H,
    st: &mut EntryState,
    caps: &Caps,
    r: &GuestReg,
    v: u64,
) -> Result<(), Error> {
    match r.wr {
        Wr::Plain => match r.loc {
            Loc::Vmcs(f) => vmcs::write(hw, f, v)?,
            loc => {
                if let Some(x) = var(st, loc) {
                    *x = v;
                }
            }
        },
        Wr::Cr0Real => {
            let cur = vmcs::read(hw, GUEST_CR0)?;
            let cr0 = cur & CR0KERNEL | v & !CR0KERNEL;
            // Not in the seed: a value VM entry would refuse is refused here.
            if !caps.guest_cr0_ok(cr0) {
                return Err(EBADCR0.into());
            }
            vmcs::write(hw, GUEST_CR0, cr0)?;
            updatelma(hw)?;
        }
        Wr::Cr0Mask => vmcs::write(hw, GUEST_CR0MASK, v | CR0KERNEL)?,
        Wr::Efer => {
            vmcs::write(hw, GUEST_IA32_EFER, v)?;
            updatelma(hw)?;
        }
        Wr::Cr4Real => {
            let cur = vmcs::read(hw, GUEST_CR4)?;
            let cr4 = cur & CR4KERNEL | v & !CR4KERNEL;
            if !caps.guest_cr4_ok(cr4) {
                return Err(EBADCR4.into());
            }
            vmcs::write(hw, GUEST_CR4, cr4)?;
        }
        Wr::Cr4Mask => vmcs::write(hw, GUEST_CR4MASK, v | CR4KERNEL)?,
        Wr::Dr7 => {
            let v = v as u32 as u64;
            st.dr[7] = v;
            vmcs::write(hw, GUEST_DR7, v)?;
        }
        Wr::Dr6 => st.dr[6] = v as u32 as u64,
        Wr::Xcr0 => st.xcr0 = (v | 1) & hw.host_xcr0(),
        // The seed's readonly() returned -1, which setregs ignored.
        Wr::Readonly => return Err("register is read-only".into()),
    }
    Ok(())
}

/// setregs: records ended by `rs`, each split into fields at any of `fs`; a record must
/// have two fields. Returns the bytes consumed ([`records`] decides what a last record
/// without its `rs` does). Records before an error stay applied.
pub(crate) fn setregs<H: Hw>(
    hw: &mut H,
    st: &mut EntryState,
    caps: &Caps,
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
        setreg(hw, st, caps, f[0], f[1])?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gprs_are_registers_of_the_file() {
        for name in GPR {
            assert!(matches!(find(name).map(|r| r.wr), Ok(Wr::Plain)), "{name}");
        }
    }
}
