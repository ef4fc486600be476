//! The `cpu` device's answers: cpuid from the real CPU through pcdev's masks, RDMSR and
//! WRMSR of the MSRs pcdev's table knows, MOV to and from the debug registers. What the
//! vmx tool does for those exits (vmx/src/run/emulate.rs), done here on the same table:
//! an MSR that lives in a register of the regs file is that register (read and written as
//! the file reads and writes it), one the table keeps is kept here per VM (its reset value
//! from the table until the guest writes it), one it zeroes reads zero and drops writes;
//! DR0-DR3, DR6 and DR7 are the regs file's. An unknown MSR and DR4/DR5 stay the client's
//! (the tool's warning, the tool's #GP).

use super::KDev;
use crate::caps::Caps;
use crate::hw::{EntryState, Hw};
use crate::regs;
use crate::vmcs::{self, MovDrQual, Msr, VM_EXQUALIF};
use alloc::collections::BTreeMap;
use ninep::Error;
use pcdev::cpu::Msr as Place;

/// The debug registers by number, as the regs file names them; DR4 and DR5 are not
/// registers of their own.
const DR: [Option<&str>; 8] = [
    Some("dr0"),
    Some("dr1"),
    Some("dr2"),
    Some("dr3"),
    None,
    None,
    Some("dr6"),
    Some("dr7"),
];

/// The MSRs pcdev's table keeps (its `Kept`) that the guest has written, per VM: at most
/// one entry for each such MSR in the table.
#[derive(Clone, Debug, Default)]
pub(crate) struct Kept(BTreeMap<Msr, u64>);

/// edx:eax, as RDMSR leaves a value and WRMSR takes one.
fn edx_eax(st: &EntryState) -> u64 {
    (st.regs.dx & 0xffff_ffff) << 32 | st.regs.ax & 0xffff_ffff
}

impl KDev {
    /// cpuid with the leaf in eax and the subleaf in ecx.
    pub(super) fn cpuid<H: Hw>(&mut self, hw: &mut H, st: &mut EntryState) {
        let r = &mut st.regs;
        let (leaf, sub) = (r.ax as u32, r.cx as u32);
        let v = pcdev::cpu::guest_cpuid(leaf, sub, &mut |l, s| hw.cpuid(l, s)).unwrap_or([0; 4]);
        (r.ax, r.bx, r.cx, r.dx) = (v[0].into(), v[1].into(), v[2].into(), v[3].into());
        self.counts.cpu += 1;
    }

    /// RDMSR of the MSR in ecx into edx:eax; false (the client's) for an MSR the table
    /// does not know.
    pub(super) fn rdmsr<H: Hw>(&mut self, hw: &mut H, st: &mut EntryState) -> Result<bool, Error> {
        let msr = Msr(st.regs.cx as u32);
        let v = match pcdev::cpu::msr(msr.0) {
            Some(Place::Reg(name)) => regs::getreg(hw, st, name)?,
            Some(Place::Kept(reset)) => self.kept.0.get(&msr).copied().unwrap_or(reset),
            Some(Place::Zero) => 0,
            None => return Ok(false),
        };
        st.regs.ax = v & 0xffff_ffff;
        st.regs.dx = v >> 32;
        self.counts.cpu += 1;
        Ok(true)
    }

    /// WRMSR of edx:eax to the MSR in ecx; false (the client's) for an MSR the table
    /// does not know.
    pub(super) fn wrmsr<H: Hw>(
        &mut self,
        hw: &mut H,
        st: &mut EntryState,
        caps: &Caps,
    ) -> Result<bool, Error> {
        let msr = Msr(st.regs.cx as u32);
        let v = edx_eax(st);
        match pcdev::cpu::msr(msr.0) {
            Some(Place::Reg(name)) => regs::setreg_value(hw, st, caps, name, v)?,
            Some(Place::Kept(_)) => {
                self.kept.0.insert(msr, v);
            }
            Some(Place::Zero) => {}
            None => return Ok(false),
        }
        self.counts.cpu += 1;
        Ok(true)
    }

    /// MOV to or from DR0-DR3, DR6 or DR7, as the regs file reads and writes them; false
    /// (the client's) for DR4 and DR5.
    pub(super) fn movdr<H: Hw>(
        &mut self,
        hw: &mut H,
        st: &mut EntryState,
        caps: &Caps,
    ) -> Result<bool, Error> {
        let q = MovDrQual(vmcs::read(hw, VM_EXQUALIF)?);
        let Some(dr) = DR[q.dr()] else {
            return Ok(false);
        };
        let gpr = regs::GPR[q.gpr()];
        let (from, to) = if q.from_dr() { (dr, gpr) } else { (gpr, dr) };
        let v = regs::getreg(hw, st, from)?;
        regs::setreg_value(hw, st, caps, to, v)?;
        self.counts.cpu += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testhw::TestHw;

    /// Every register pcdev's table names is one the regs file reads and writes (with
    /// no current VMCS a VMCS field's access fails, but not for want of the register).
    #[test]
    fn table_registers_are_registers_of_the_file() {
        let mut hw = TestHw::new(64);
        let caps = Caps::read(&mut hw).unwrap();
        let mut st = EntryState::default();
        let not_theirs =
            |e: Error| !matches!(e.as_str(), "unknown register" | "register is read-only");
        let mut n = 0;
        for i in (0..0x2000).chain(0xc000_0000..0xc000_2000) {
            if let Some(Place::Reg(name)) = pcdev::cpu::msr(i) {
                let rd = regs::getreg(&mut hw, &mut st, name);
                assert!(rd.map_or_else(not_theirs, |_| true), "{name}");
                let wr = regs::setreg_value(&mut hw, &mut st, &caps, name, 0);
                assert!(wr.map_or_else(not_theirs, |_| true), "{name}");
                n += 1;
            }
        }
        assert_eq!(n, 4);
        for name in DR.iter().flatten() {
            assert!(
                regs::setreg_value(&mut hw, &mut st, &caps, name, 0)
                    .map_or_else(not_theirs, |_| true),
                "{name}"
            );
        }
    }
}
