//! The `map` file: guest-physical ranges mapped to segments, kept as the seed's sorted
//! list (each entry runs to the next one's address; a list head at 0 with no segment
//! closes it), parsed and printed in the seed's line format, and reflected in EPT.

use crate::ept::Ept;
use crate::hw::{Hw, PAGE};
use crate::plan9::{hex, records, tokenize, Tail, EGREG};
use crate::segment::{SegRef, Segments, ENOSEG};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ninep::Error;

/// Memory types by the EPT memory-type field.
pub(crate) const MTYPE: [&str; 8] = ["uc", "wc", "02", "03", "wt", "wp", "wb", "07"];

/// One range: from `addr` to the next entry's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VmMem {
    pub(crate) addr: u64,
    pub(crate) seg: Option<SegRef>,
    pub(crate) off: u64,
    pub(crate) name: String,
    /// EPT leaf bits: rwx (x also sets bit 10), memory type << 3, 0x40 ignore PAT.
    pub(crate) attr: u16,
}

impl VmMem {
    /// The list head: address 0, nothing mapped.
    fn head() -> Self {
        VmMem {
            addr: 0,
            seg: None,
            off: 0,
            name: String::new(),
            attr: 0,
        }
    }
}

/// A VM's map.
#[derive(Default)]
pub(crate) struct MemMap {
    pub(crate) list: Vec<VmMem>,
}

fn vmokpage(a: u64) -> bool {
    a & 0xfff == 0 && a >> 48 == 0
}

impl MemMap {
    /// The range holding guest-physical `at` and where it ends (the next entry's
    /// address); None before the first entry or past the last.
    pub(crate) fn range_at(&self, at: u64) -> Option<(&VmMem, u64)> {
        let i = self.list.partition_point(|m| m.addr <= at);
        let m = self.list.get(i.checked_sub(1)?)?;
        Some((m, self.list.get(i)?.addr))
    }

    /// The end of the highest mapped range (0 with nothing mapped).
    pub(crate) fn end(&self) -> u64 {
        self.list
            .windows(2)
            .filter(|w| w[0].seg.is_some())
            .map(|w| w[1].addr)
            .max()
            .unwrap_or(0)
    }

    /// cmdgetmeminfo: one line per mapped range.
    pub(crate) fn text(&self) -> String {
        let mut s = String::new();
        for (i, m) in self.list.iter().enumerate() {
            if m.seg.is_none() {
                continue;
            }
            let a = |bit: u16, c: char| if m.attr & bit != 0 { c } else { '-' };
            let mut mt = String::from(MTYPE[(m.attr >> 3 & 7) as usize]);
            if m.attr & 0x40 != 0 {
                mt.push('!');
            }
            let next = self.list.get(i + 1).map_or(0, |n| n.addr);
            s.push_str(&format!(
                "{}{}{} {} {} {} {} {}\n",
                a(1, 'r'),
                a(2, 'w'),
                a(4, 'x'),
                mt,
                hex(m.addr),
                hex(next),
                m.name,
                hex(m.off)
            ));
        }
        s
    }

    /// cmdclearmeminfo: every mapping and EPT table gone.
    pub(crate) fn clear<H: Hw>(&mut self, hw: &mut H, segs: &mut Segments, ept: &mut Ept) {
        ept.free(hw);
        for m in self.list.drain(..) {
            if let Some(r) = m.seg {
                segs.put(hw, r);
            }
        }
    }

    /// cmdsetmeminfo: applies each complete line in turn; returns the bytes consumed
    /// through the last newline. Lines before an error stay applied, as in the seed.
    pub(crate) fn set<H: Hw>(
        &mut self,
        hw: &mut H,
        segs: &mut Segments,
        ept: &mut Ept,
        data: &[u8],
        uname: &str,
    ) -> Result<usize, Error> {
        let (recs, n) = records(data, b'\n', Tail::Leave);
        for rec in recs {
            let f = tokenize(&String::from_utf8_lossy(rec), 10);
            if f.is_empty() {
                continue;
            }
            let (mp, end) = parse_line(hw, &f, segs, uname)?;
            if let Err(e) = translate(hw, ept, &mp, end) {
                if let Some(r) = mp.seg {
                    segs.put(hw, r);
                }
                return Err(e);
            }
            self.update(hw, segs, mp, end);
        }
        Ok(n)
    }

    /// vmmemupdate: puts [mp.addr, end) into the list, cutting what it covers and merging
    /// neighbours that continue each other.
    fn update<H: Hw>(&mut self, hw: &mut H, segs: &mut Segments, mp: VmMem, end: u64) {
        let l = &mut self.list;
        // The range that holds `end` continues after the new one.
        let p = l.iter().rposition(|m| m.addr <= end);
        let qi = match p {
            Some(i) if l[i].addr >= mp.addr => i,
            _ => {
                let q = p.map_or_else(VmMem::head, |i| l[i].clone());
                if let Some(r) = &q.seg {
                    segs.incref(r);
                }
                let at = p.map_or(0, |i| i + 1);
                l.insert(at, q);
                at
            }
        };
        let q = &mut l[qi];
        if q.seg.is_some() {
            q.off = q.off.wrapping_add(end - q.addr);
        }
        q.addr = end;
        let j = l.iter().position(|m| m.addr >= mp.addr).unwrap_or(l.len());
        l.insert(j, mp);
        // Everything between the new range and the continuation is covered by it.
        for m in l.drain(j + 1..qi + 1) {
            if let Some(r) = m.seg {
                segs.put(hw, r);
            }
        }
        let mut i = 0;
        while i < l.len() {
            let prev = if i == 0 {
                VmMem::head()
            } else {
                l[i - 1].clone()
            };
            let m = &l[i];
            // Same segment, offsets continuing the addresses, and (a fix) same attributes.
            let joins = m.seg == prev.seg
                && (m.seg.is_none()
                    || (m.addr.wrapping_sub(prev.addr) == m.off.wrapping_sub(prev.off)
                        && m.attr == prev.attr));
            if joins {
                let m = l.remove(i);
                drop(prev);
                if let Some(r) = m.seg {
                    segs.put(hw, r);
                }
            } else {
                i += 1;
            }
        }
    }
}

/// One map line, validated as cmdsetmeminfo does; the range's end. A segment named by
/// the line is referenced (the caller puts it on failure).
fn parse_line<H: Hw>(
    hw: &mut H,
    f: &[String],
    segs: &mut Segments,
    uname: &str,
) -> Result<(VmMem, u64), Error> {
    let rc = f.len();
    if rc != 4 && rc != 6 {
        return Err("number of fields wrong".into());
    }
    let mut attr: u16 = 0;
    for c in f[0].chars() {
        match c {
            'r' if attr & 1 == 0 => attr |= 1,
            'w' if attr & 2 == 0 => attr |= 2,
            'x' if attr & 4 == 0 => attr |= 0x404,
            '-' => {}
            _ => return Err("invalid access field".into()),
        }
    }
    let t = f[1].as_bytes();
    let j = MTYPE
        .iter()
        .position(|m| t.len() >= 2 && &t[..2] == m.as_bytes())
        .ok_or(Error::from("invalid memory type"))?;
    if t.len() > 3 {
        return Err("invalid memory type".into());
    }
    attr |= (j as u16) << 3;
    match t.get(2) {
        Some(b'!') => attr |= 0x40,
        Some(_) => return Err("invalid memory type".into()),
        None => {}
    }
    // strtoull must consume the whole field (an empty one reads as 0, as in C).
    let num = |s: &str| {
        let (v, n) = crate::plan9::strtoull(s, 0);
        (v, n == s.len())
    };
    let (addr, ok) = num(&f[2]);
    if !ok || !vmokpage(addr) {
        return Err("invalid low guest physical address".into());
    }
    let (end, ok) = num(&f[3]);
    if !ok || !vmokpage(end) || end <= addr {
        return Err("invalid high guest physical address".into());
    }
    let mut mp = VmMem {
        addr,
        seg: None,
        off: 0,
        name: String::new(),
        attr,
    };
    if attr & 7 != 0 {
        if rc != 6 {
            return Err("number of fields wrong".into());
        }
        let r = segs.attach(&f[4], uname)?.ok_or(Error::from(ENOSEG))?;
        let checked = (|| {
            let size = (r.frames().len() * PAGE) as u64;
            if end - addr > size {
                return Err(Error::from("out of bounds"));
            }
            let (off, ok) = num(&f[5]);
            if !ok || !vmokpage(off) {
                return Err("invalid offset".into());
            }
            // The seed checked the bounds before reading the offset, so a too-large
            // offset surfaced later as epttranslate's Egreg.
            if off.checked_add(end - addr).is_none_or(|top| top > size) {
                return Err("out of bounds".into());
            }
            Ok(off)
        })();
        match checked {
            Ok(off) => {
                mp.seg = Some(r);
                mp.off = off;
                mp.name = f[4].clone();
            }
            Err(e) => {
                segs.put(hw, r);
                return Err(e);
            }
        }
    }
    Ok((mp, end))
}

/// epttranslate: leaf entries for a mapped range, cleared ones for an unmapped one.
fn translate<H: Hw>(hw: &mut H, ept: &mut Ept, mp: &VmMem, end: u64) -> Result<(), Error> {
    let Some(r) = &mp.seg else {
        ept.clear(hw, mp.addr, end);
        return Ok(());
    };
    let mut p = mp.addr;
    let mut v = mp.off;
    while p != end {
        let pa = r
            .frames()
            .get((v / PAGE as u64) as usize)
            .ok_or(Error::from(EGREG))?
            .pa();
        ept.map(hw, p, pa | mp.attr as u64)?;
        p += PAGE as u64;
        v += PAGE as u64;
    }
    Ok(())
}
