//! Just enough ELF to load a statically linked kernel: the header and its PT_LOAD program
//! headers, 32- or 64-bit little-endian, every field bounds-checked.

use super::{err, le16, le32, le64, LoadError};

/// A loadable segment: `filesz` bytes from file offset `offset` placed at physical
/// address `paddr`, then zeros up to `memsz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub paddr: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf {
    pub class64: bool,
    pub machine: u16,
    pub entry: u64,
    pub segments: Vec<Segment>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

pub fn parse(b: &[u8]) -> Result<Elf, LoadError> {
    if !b.starts_with(b"\x7fELF") {
        return err("not an ELF image");
    }
    let class64 = match b.get(4) {
        Some(1) => false,
        Some(2) => true,
        c => return err(format!("ELF: unknown class {c:?}")),
    };
    if b.get(5) != Some(&1) {
        return err("ELF: not little-endian");
    }
    let short = || LoadError("ELF: header truncated".into());
    let etype = le16(b, 16).ok_or_else(short)?;
    if etype != 2 {
        return err(format!("ELF: type {etype} is not an executable (2)"));
    }
    let machine = le16(b, 18).ok_or_else(short)?;
    let (entry, phoff, phentsize, phnum) = if class64 {
        (
            le64(b, 24).ok_or_else(short)?,
            le64(b, 32).ok_or_else(short)?,
            le16(b, 54).ok_or_else(short)?,
            le16(b, 56).ok_or_else(short)?,
        )
    } else {
        (
            u64::from(le32(b, 24).ok_or_else(short)?),
            u64::from(le32(b, 28).ok_or_else(short)?),
            le16(b, 42).ok_or_else(short)?,
            le16(b, 44).ok_or_else(short)?,
        )
    };
    let min = if class64 { 56 } else { 32 };
    if phnum == 0 {
        return err("ELF: no program headers");
    }
    if usize::from(phentsize) < min {
        return err(format!("ELF: program header size {phentsize} below {min}"));
    }
    let mut segments = Vec::new();
    for i in 0..u64::from(phnum) {
        let at = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| LoadError("ELF: program header offset overflows".into()))?;
        let trunc = || LoadError(format!("ELF: program header {i} lies outside the file"));
        let ptype = le32(b, at).ok_or_else(trunc)?;
        let f = |o32: usize, o64: usize| -> Option<u64> {
            if class64 {
                le64(b, at + o64)
            } else {
                le32(b, at + o32).map(u64::from)
            }
        };
        let seg = Segment {
            offset: f(4, 8).ok_or_else(trunc)?,
            vaddr: f(8, 16).ok_or_else(trunc)?,
            paddr: f(12, 24).ok_or_else(trunc)?,
            filesz: f(16, 32).ok_or_else(trunc)?,
            memsz: f(20, 40).ok_or_else(trunc)?,
        };
        match ptype {
            PT_DYNAMIC | PT_INTERP => return err("ELF: dynamically linked"),
            PT_LOAD => {}
            _ => continue,
        }
        if seg.filesz > seg.memsz {
            return err(format!(
                "ELF: segment {i} is shorter in memory ({:#x}) than in the file ({:#x})",
                seg.memsz, seg.filesz
            ));
        }
        let end = seg.offset.checked_add(seg.filesz);
        if end.is_none_or(|e| e > b.len() as u64) {
            return err(format!("ELF: segment {i} extends past the end of the file"));
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        return err("ELF: no loadable segments");
    }
    Ok(Elf {
        class64,
        machine,
        entry,
        segments,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF32 executable: one PT_LOAD of `code` at `paddr` with `bss` extra zero
    /// bytes, `extra` placed in the file after the code (e.g. a multiboot header).
    pub(crate) fn elf32(code: &[u8], paddr: u32, bss: u32, entry: u32) -> Vec<u8> {
        let mut f = vec![0u8; 0x54];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 1;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&3u16.to_le_bytes());
        f[24..28].copy_from_slice(&entry.to_le_bytes());
        f[28..32].copy_from_slice(&0x34u32.to_le_bytes());
        f[40..42].copy_from_slice(&0x34u16.to_le_bytes());
        f[42..44].copy_from_slice(&32u16.to_le_bytes());
        f[44..46].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x34;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        f[ph + 4..ph + 8].copy_from_slice(&0x54u32.to_le_bytes());
        f[ph + 8..ph + 12].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 12..ph + 16].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 16..ph + 20].copy_from_slice(&(code.len() as u32).to_le_bytes());
        f[ph + 20..ph + 24].copy_from_slice(&(code.len() as u32 + bss).to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn parses_elf32() {
        let f = elf32(&[1, 2, 3], 0x100000, 0x10, 0x100001);
        let e = parse(&f).unwrap();
        assert!(!e.class64);
        assert_eq!(e.entry, 0x100001);
        assert_eq!(
            e.segments,
            vec![Segment {
                offset: 0x54,
                paddr: 0x100000,
                vaddr: 0x100000,
                filesz: 3,
                memsz: 0x13
            }]
        );
    }

    #[test]
    fn rejects_bad_elves() {
        let good = elf32(&[1, 2, 3], 0x100000, 0, 0x100000);
        for (mutate, msg) in [
            ((|f: &mut Vec<u8>| f[4] = 9) as fn(&mut Vec<u8>), "class"),
            (|f| f[5] = 2, "little-endian"),
            (|f| f[16] = 1, "not an executable"),
            (|f| f[44] = 0, "no program headers"),
            (|f| f[42] = 8, "header size"),
            (|f| f[28] = 0xf0, "outside the file"),
            (|f| f[0x34] = 3, "dynamically linked"),
            (|f| f[0x34] = 4, "no loadable segments"),
            (|f| f[0x34 + 20] = 1, "shorter in memory"),
            (
                |f| {
                    f[0x34 + 16] = 0x40;
                    f[0x34 + 20] = 0x40
                },
                "past the end",
            ),
            (|f| f.truncate(20), "truncated"),
        ] {
            let mut f = good.clone();
            mutate(&mut f);
            let e = parse(&f).unwrap_err();
            assert!(e.0.contains(msg), "{e} lacks {msg}");
        }
    }
}
