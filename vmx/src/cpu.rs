//! The CPU the guest is told about: cpuid leaves and model-specific registers.
//!
//! vmx(1) answers cpuid from the host it runs on and masks the features it cannot
//! virtualise. A remote tool does not run on the CPU the guest runs on, so this is a
//! fixed table: a Haswell-class Intel CPU (what Bochs's corei7_haswell_4770 emulates)
//! reduced to vmx(1)'s masks: no local APIC, MTRR, PAT, machine checks, SYSENTER,
//! XSAVE, AVX or monitor/mwait, since none of them is emulated or passed through #X.

/// Highest basic leaf.
const MAX_BASIC: u32 = 7;
const MAX_EXT: u32 = 0x8000_0008;
const BRAND: &[u8; 48] = b"vmx over 9P virtual CPU (Haswell-class)\0\0\0\0\0\0\0\0\0";

fn brand(i: usize) -> [u32; 4] {
    let w = |j: usize| {
        let o = 16 * i + 4 * j;
        u32::from_le_bytes([BRAND[o], BRAND[o + 1], BRAND[o + 2], BRAND[o + 3]])
    };
    [w(0), w(1), w(2), w(3)]
}

/// The answer to cpuid with eax=`leaf`, ecx=`sub`: [eax, ebx, ecx, edx], and whether the
/// leaf is one the table knows (unknown leaves read as zeros).
pub fn cpuid(leaf: u32, _sub: u32) -> ([u32; 4], bool) {
    let r = match leaf {
        // "GenuineIntel" in ebx, edx, ecx.
        0 => [MAX_BASIC, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
        // Family 6 model 0x3c stepping 3; 64-byte clflush lines.
        // ecx: SSE3 PCLMULQDQ SSSE3 CX16 SSE4.1 SSE4.2 POPCNT.
        // edx: FPU PSE TSC MSR PAE CX8 PGE CMOV PSE36 MMX FXSR SSE SSE2.
        1 => [0x0003_06c3, 0x0000_0800, 0x0098_2203, 0x0782_a179],
        2 => [0x7603_6301, 0x00f0_b5ff, 0, 0x00c1_0000],
        3..=MAX_BASIC => [0; 4],
        0x8000_0000 => [MAX_EXT, 0, 0, 0],
        // ecx: LAHF/SAHF in long mode. edx: SYSCALL, NX, long mode.
        0x8000_0001 => [0, 0, 0x0000_0001, 0x2010_0800],
        0x8000_0002..=0x8000_0004 => brand((leaf - 0x8000_0002) as usize),
        0x8000_0005 | 0x8000_0007 => [0; 4],
        0x8000_0006 => [0, 0, 0x0100_6040, 0],
        0x8000_0008 => [0x0000_3027, 0, 0, 0],
        // The hypervisor range: guests scan it in 0x100 steps for Xen, KVM, Hyper-V
        // signatures. No hypervisor to report: zeros, as a bare CPU answers.
        0x4000_0000..=0x4fff_ffff => [0; 4],
        _ => return ([0; 4], false),
    };
    (r, true)
}

/// Where an MSR lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msr {
    /// A register of #X's regs file.
    Reg(&'static str),
    /// Kept by the tool: reads give back what the guest last wrote (or the reset value).
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

    #[test]
    fn vendor_and_features() {
        let (r, known) = cpuid(0, 0);
        assert!(known);
        let mut v = Vec::new();
        for w in [r[1], r[3], r[2]] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(v, b"GenuineIntel");
        let (f, _) = cpuid(1, 0);
        // Linux x86_64 needs FPU, PSE, MSR, PAE, CX8, PGE, CMOV, FXSR, SSE, SSE2...
        for bit in [0, 3, 5, 6, 8, 13, 15, 24, 25, 26] {
            assert_ne!(f[3] & 1 << bit, 0, "edx bit {bit}");
        }
        // ...and must not see an APIC, MTRRs or XSAVE that nothing emulates.
        for (reg, bit) in [(3, 9), (3, 12), (2, 26), (2, 27), (2, 28)] {
            assert_eq!(f[reg] & 1 << bit, 0, "reg {reg} bit {bit}");
        }
        // Long mode and NX.
        let (e, _) = cpuid(0x8000_0001, 0);
        assert_ne!(e[3] & 1 << 29, 0);
        assert_ne!(e[3] & 1 << 20, 0);
        assert_eq!(cpuid(0x8000_0000, 0).0[0], 0x8000_0008);
        assert_eq!(cpuid(0x4000_0000, 0), ([0; 4], true));
        assert_eq!(cpuid(0x4000_0100, 0), ([0; 4], true));
        assert_eq!(cpuid(0x2000_0000, 0), ([0; 4], false));
    }

    #[test]
    fn brand_string() {
        let mut b = Vec::new();
        for l in 0x8000_0002..=0x8000_0004 {
            for w in cpuid(l, 0).0 {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
        assert_eq!(&b[..], &BRAND[..]);
    }

    #[test]
    fn msrs() {
        assert_eq!(msr(0x277), Some(Msr::Reg("pat")));
        assert_eq!(msr(0xc000_0080), Some(Msr::Reg("efer")));
        assert_eq!(msr(0x8b), Some(Msr::Zero));
        assert_eq!(msr(0x1a0), Some(Msr::Kept(1)));
        assert_eq!(msr(0x1234), None);
    }
}
