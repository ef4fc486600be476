//! The CPU the guest is told about: cpuid leaves and model-specific registers.
//!
//! vmx(1) answers cpuid from the host it runs on and masks the features it cannot
//! virtualise. A remote tool does not run on the CPU the guest runs on, so it describes
//! a fixed Haswell-class Intel CPU (what Bochs's corei7_haswell_4770 emulates) through
//! the masks the kernel applies to the real one (`pcdev::cpu`): no local APIC, MTRR,
//! PAT, machine checks, SYSENTER, XSAVE, AVX or monitor/mwait.

pub use pcdev::cpu::{msr, Msr};

const BRAND: &[u8; 48] = b"vmx over 9P virtual CPU (Haswell-class)\0\0\0\0\0\0\0\0\0";

fn brand(i: usize) -> [u32; 4] {
    let w = |j: usize| {
        let o = 16 * i + 4 * j;
        u32::from_le_bytes([BRAND[o], BRAND[o + 1], BRAND[o + 2], BRAND[o + 3]])
    };
    [w(0), w(1), w(2), w(3)]
}

/// The CPU described, before the masks.
fn haswell(leaf: u32, _sub: u32) -> [u32; 4] {
    match leaf {
        // "GenuineIntel" in ebx, edx, ecx.
        0 => [pcdev::cpu::MAX_BASIC, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
        // Family 6 model 0x3c stepping 3; 64-byte clflush lines.
        // ecx: SSE3 PCLMULQDQ SSSE3 CX16 SSE4.1 SSE4.2 POPCNT.
        // edx: FPU PSE TSC MSR PAE CX8 PGE CMOV PSE36 MMX FXSR SSE SSE2.
        1 => [0x0003_06c3, 0x0000_0800, 0x0098_2203, 0x0782_a179],
        2 => [0x7603_6301, 0x00f0_b5ff, 0, 0x00c1_0000],
        0x8000_0000 => [pcdev::cpu::MAX_EXT, 0, 0, 0],
        0x8000_0001 => [0, 0, 0x0000_0001, 0x2010_0800],
        0x8000_0002..=0x8000_0004 => brand((leaf - 0x8000_0002) as usize),
        0x8000_0006 => [0, 0, 0x0100_6040, 0],
        0x8000_0008 => [0x0000_3027, 0, 0, 0],
        _ => [0; 4],
    }
}

/// The answer to cpuid with eax=`leaf`, ecx=`sub`: [eax, ebx, ecx, edx], and whether the
/// leaf is one the guest is told about (others read as zeros).
pub fn cpuid(leaf: u32, sub: u32) -> ([u32; 4], bool) {
    match pcdev::cpu::guest_cpuid(leaf, sub, &mut haswell) {
        Some(r) => (r, true),
        None => ([0; 4], false),
    }
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
}
