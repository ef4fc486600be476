//! #X wait lines: `REASON QUAL pc PC sp SP ilen ILEN iinfo IINFO [excode C] [va VA]
//! [pa PA] [ax AX] [time NS]` (`time`, the guest's clock, after the hypervisor's `clock`
//! extension), or `*ack VECTOR`. The first word names the exit, the second is the
//! exit qualification; the rest are name/value pairs, read by name as vmx(1) does.

use crate::layout::parse_u64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    pub raw: String,
    /// "io", ".cpuid", "*ack", "#gp", "!entrystate", ...
    pub name: String,
    pub qual: u64,
    pub pc: Option<u64>,
    pub sp: Option<u64>,
    pub ax: Option<u64>,
    pub ilen: u64,
    pub iinfo: u64,
    pub pa: Option<u64>,
    pub va: Option<u64>,
    pub excode: Option<u64>,
    /// The guest's clock in ns at the exit (the `clock` extension).
    pub time: Option<u64>,
}

impl Exit {
    /// Parses one wait line. Unknown fields are kept in `raw` only; a line without a
    /// reason and a qualification is an error (vmx(1): "invalid wait message").
    pub fn parse(line: &str) -> Result<Exit, String> {
        let line = line.trim_end_matches(['\n', '\0']);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 {
            return Err(format!("invalid wait message: {line:?}"));
        }
        let num = |s: &str| {
            parse_u64(s).ok_or_else(|| format!("invalid number {s:?} in wait message: {line:?}"))
        };
        let mut e = Exit {
            raw: line.to_string(),
            name: f[0].to_string(),
            qual: num(f[1])?,
            ..Exit::default()
        };
        for kv in f[2..].chunks(2) {
            let [k, v] = kv else {
                return Err(format!("odd field {:?} in wait message: {line:?}", kv[0]));
            };
            let v = num(v)?;
            match *k {
                "pc" => e.pc = Some(v),
                "sp" => e.sp = Some(v),
                "ax" => e.ax = Some(v),
                "ilen" => e.ilen = v,
                "iinfo" => e.iinfo = v,
                "pa" => e.pa = Some(v),
                "va" => e.va = Some(v),
                "excode" => e.excode = Some(v),
                "time" => e.time = Some(v),
                _ => {}
            }
        }
        Ok(e)
    }

    /// A notification (`*ack`): the guest did not stop.
    pub fn is_notification(&self) -> bool {
        self.name.starts_with('*')
    }
}

/// An I/O instruction, from the exit qualification of an `io` exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Io {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub input: bool,
    /// ins/outs.
    pub string: bool,
    pub rep: bool,
}

impl Io {
    pub fn decode(qual: u64) -> Io {
        Io {
            port: (qual >> 16) as u16,
            size: match qual & 7 {
                0 => 1,
                1 => 2,
                _ => 4,
            },
            input: qual & 8 != 0,
            string: qual & 16 != 0,
            rep: qual & 32 != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_exit_line() {
        let e = Exit::parse("io 0x3f80000 pc 0x100123 sp 0x101470 ilen 0x1 iinfo 0x0 ax 0x48\n")
            .unwrap();
        assert_eq!(e.name, "io");
        assert_eq!(e.qual, 0x3f80000);
        assert_eq!(
            (e.pc, e.sp, e.ax, e.ilen),
            (Some(0x100123), Some(0x101470), Some(0x48), 1)
        );
        assert_eq!((e.pa, e.time), (None, None));
        let e = Exit::parse("io 0x3f80000 pc 0x1 sp 0x2 ilen 0x1 iinfo 0x0 ax 0x48 time 0x16e360")
            .unwrap();
        assert_eq!((e.ax, e.time), (Some(0x48), Some(1_500_000)));
        let io = Io::decode(e.qual);
        assert_eq!(
            io,
            Io {
                port: 0x3f8,
                size: 1,
                input: false,
                string: false,
                rep: false
            }
        );
        assert_eq!(
            Io::decode(0x3fd0008),
            Io {
                port: 0x3fd,
                size: 1,
                input: true,
                string: false,
                rep: false
            }
        );
        assert_eq!(
            Io::decode(0xcfc0003 | 0x30),
            Io {
                port: 0xcfc,
                size: 4,
                input: false,
                string: true,
                rep: true
            }
        );
        assert_eq!(Io::decode(0x400009).size, 2);
    }

    #[test]
    fn other_lines() {
        let e = Exit::parse("*ack 32").unwrap();
        assert!(e.is_notification());
        assert_eq!(e.qual, 32);
        let e = Exit::parse(
            "eptfault 0x181 pc 0x10 sp 0x0 ilen 0x3 iinfo 0x0 va 0xfee00020 pa 0xfee00020",
        )
        .unwrap();
        assert_eq!((e.pa, e.va), (Some(0xfee00020), Some(0xfee00020)));
        let e = Exit::parse("#gp 0x0 pc 0x5 sp 0x6 ilen 0x2 iinfo 0x0 excode 0x18").unwrap();
        assert_eq!(e.excode, Some(0x18));
        assert!(!e.is_notification());
    }

    #[test]
    fn bad_lines() {
        assert!(Exit::parse("").is_err());
        assert!(Exit::parse("io").is_err());
        assert!(Exit::parse("io zz").unwrap_err().contains("invalid number"));
        assert!(Exit::parse("io 0 pc").unwrap_err().contains("odd field"));
        assert!(Exit::parse("io 0 pc 0xq").is_err());
    }
}
