//! The CPU a guest is told about: which cpuid leaves and feature bits it sees, and where
//! its model-specific registers live. After vmx(1), which answers cpuid from the CPU it
//! runs on and masks what it cannot virtualise: no local APIC, MTRR, PAT, machine
//! checks, SYSENTER, XSAVE, AVX, monitor/mwait, RDTSCP or VMX, since none of them is
//! emulated or passed through #X. The kernel applies [`guest_cpuid`] to the real CPU;
//! the vmx tool, which does not run on the guest's CPU, to a fixed Haswell-class one.

/// Highest basic and extended leaves a guest sees.
pub const MAX_BASIC: u32 = 7;
pub const MAX_EXT: u32 = 0x8000_0008;

/// Leaf 1 feature bits a guest may see. ecx: SSE3 PCLMULQDQ SSSE3 CX16 SSE4.1 SSE4.2
/// MOVBE POPCNT AES. edx: FPU PSE TSC MSR PAE CX8 PGE CMOV PSE36 CLFSH MMX FXSR SSE SSE2.
const LEAF1_ECX: u32 = 0x02d8_2203;
const LEAF1_EDX: u32 = 0x078a_a179;
/// Leaf 0x80000001: ecx LAHF/SAHF in long mode; edx SYSCALL, NX, long mode.
const EXT1_ECX: u32 = 0x0000_0001;
const EXT1_EDX: u32 = 0x2010_0800;

/// What cpuid with eax=`leaf`, ecx=`sub` tells the guest, [eax, ebx, ecx, edx], given
/// what the CPU described by `cpu` answers; None for a leaf the guest is not told about
/// (it reads zeros, as a leaf beyond the maximum).
pub fn guest_cpuid(
    leaf: u32,
    sub: u32,
    cpu: &mut dyn FnMut(u32, u32) -> [u32; 4],
) -> Option<[u32; 4]> {
    Some(match leaf {
        0 => {
            let r = cpu(0, 0);
            [r[0].min(MAX_BASIC), r[1], r[2], r[3]]
        }
        1 => {
            let r = cpu(1, 0);
            // Family, model, stepping; the CLFLUSH line size, but no APIC ID or
            // logical processor count.
            [r[0], r[1] & 0xff00, r[2] & LEAF1_ECX, r[3] & LEAF1_EDX]
        }
        2 => cpu(2, 0),
        3..=MAX_BASIC => [0; 4],
        0x8000_0000 => {
            let r = cpu(0x8000_0000, 0);
            [r[0].clamp(0x8000_0000, MAX_EXT), 0, 0, 0]
        }
        0x8000_0001 => {
            let r = cpu(0x8000_0001, 0);
            [0, 0, r[2] & EXT1_ECX, r[3] & EXT1_EDX]
        }
        0x8000_0002..=0x8000_0004 | 0x8000_0006 => cpu(leaf, sub),
        0x8000_0005 | 0x8000_0007 => [0; 4],
        // Physical and linear address sizes only.
        0x8000_0008 => [cpu(leaf, 0)[0] & 0xffff, 0, 0, 0],
        // The hypervisor range: guests scan it in 0x100 steps for Xen, KVM, Hyper-V
        // signatures. No hypervisor to report: zeros, as a bare CPU answers.
        0x4000_0000..=0x4fff_ffff => [0; 4],
        _ => return None,
    })
}

/// The leaves a guest is told about and their answers (subleaf 0), in order: what the
/// kernel's `vmx/cpuid` file lists.
pub fn guest_leaves(
    cpu: &mut dyn FnMut(u32, u32) -> [u32; 4],
) -> impl Iterator<Item = (u32, [u32; 4])> {
    let max = guest_cpuid(0, 0, cpu).map_or(0, |r| r[0]);
    let ext = guest_cpuid(0x8000_0000, 0, cpu).map_or(0x8000_0000, |r| r[0]);
    let leaves: alloc::vec::Vec<(u32, [u32; 4])> = (0..=max)
        .chain(0x8000_0000..=ext)
        .filter_map(|l| guest_cpuid(l, 0, cpu).map(|r| (l, r)))
        .collect();
    leaves.into_iter()
}

/// Where an MSR lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msr {
    /// A register of #X's regs file (a VMCS guest field).
    Reg(&'static str),
    /// Kept by the client: reads give back what the guest last wrote (or this reset
    /// value).
    Kept(u64),
    /// Reads zero, writes are dropped (microcode signature and the like).
    Zero,
}

/// The MSRs a guest may use. Unknown MSRs are the caller's decision (vmx(1) reads them
/// as zero and ignores writes, with a message).
pub fn msr(index: u32) -> Option<Msr> {
    Some(match index {
        0x277 => Msr::Reg("pat"),
        0xc000_0080 => Msr::Reg("efer"),
        0xc000_0100 => Msr::Reg("fsbase"),
        0xc000_0101 => Msr::Reg("gsbase"),
        0x8b | 0x17 | 0x3a | 0x1b | 0xfe | 0x79 => Msr::Zero,
        // What Linux probes at boot, each read as the feature absent: SMI count, platform
        // info (no CPUID faulting), misc features enables, machine-check capabilities (no
        // banks), AMD's DE_CFG.
        0x34 | 0xce | 0x140 | 0x179 | 0xc001_1029 => Msr::Zero,
        // MISC_ENABLE: fast strings.
        0x1a0 => Msr::Kept(1),
        // SYSCALL targets and the swapgs base: kept so the guest reads back its values.
        0xc000_0081..=0xc000_0084 | 0xc000_0102 => Msr::Kept(0),
        // SYSENTER: Linux programs it even where cpuid shows no SEP.
        0x174..=0x176 => Msr::Kept(0),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU that sets every bit and has many leaves.
    fn everything(leaf: u32, _sub: u32) -> [u32; 4] {
        match leaf {
            0 => [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            0x8000_0000 => [0x8000_0021, 0, 0, 0],
            _ => [u32::MAX; 4],
        }
    }

    #[test]
    fn masks() {
        let g = |l| guest_cpuid(l, 0, &mut everything);
        assert_eq!(g(0).unwrap()[0], 7);
        let f = g(1).unwrap();
        // No APIC, MTRR, PAT, MCE/MCA, SEP; no VMX, XSAVE/OSXSAVE, AVX, x2APIC, hypervisor bit.
        for bit in [9, 12, 16, 7, 14, 11] {
            assert_eq!(f[3] & 1 << bit, 0, "edx bit {bit}");
        }
        for bit in [5, 26, 27, 28, 21, 31, 3] {
            assert_eq!(f[2] & 1 << bit, 0, "ecx bit {bit}");
        }
        // What Linux x86_64 needs stays.
        for bit in [0, 3, 5, 6, 8, 13, 15, 24, 25, 26] {
            assert_ne!(f[3] & 1 << bit, 0, "edx bit {bit}");
        }
        assert_eq!(f[1], 0xff00);
        assert_eq!(g(0x8000_0000).unwrap()[0], 0x8000_0008);
        let e = g(0x8000_0001).unwrap();
        assert_eq!(e[3], EXT1_EDX, "no RDTSCP, 1 GiB pages");
        assert_eq!(g(7), Some([0; 4]));
        assert_eq!(g(0x4000_0100), Some([0; 4]));
        assert_eq!(g(0x2000_0000), None);
        assert_eq!(g(0xd), None);
        let leaves: alloc::vec::Vec<u32> = guest_leaves(&mut everything).map(|x| x.0).collect();
        assert_eq!(leaves.len(), 8 + 9);
        assert_eq!(leaves[8], 0x8000_0000);
    }

    #[test]
    fn msrs() {
        assert_eq!(msr(0x277), Some(Msr::Reg("pat")));
        assert_eq!(msr(0xc000_0080), Some(Msr::Reg("efer")));
        assert_eq!(msr(0x8b), Some(Msr::Zero));
        assert_eq!(msr(0x1a0), Some(Msr::Kept(1)));
        assert_eq!(msr(0x179), Some(Msr::Zero));
        assert_eq!(msr(0x1234), None);
    }
}
