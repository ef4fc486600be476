//! A cache of the guest's registers, as vmx(1) keeps one: values the wait line carries
//! (pc, sp, ax) are known without a round trip, the regs file is read whole only when a
//! handler needs another register, and changed registers ride on the next `go`
//! (`go name=value;name=value;`) instead of costing a write each.

use crate::layout::parse_u64;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Regs {
    /// Known values.
    val: BTreeMap<String, u64>,
    /// Names changed since the last `go`, in the order they were set.
    dirty: Vec<String>,
}

impl Regs {
    pub fn new() -> Regs {
        Regs::default()
    }

    pub fn known(&self, name: &str) -> Option<u64> {
        self.val.get(name).copied()
    }

    /// A value the hypervisor reported (wait line): known, not to be written back.
    pub fn poke(&mut self, name: &str, v: u64) {
        if !self.dirty.iter().any(|d| d == name) {
            self.val.insert(name.to_string(), v);
        }
    }

    /// A value the tool changed: written with the next `go`.
    pub fn set(&mut self, name: &str, v: u64) {
        self.val.insert(name.to_string(), v);
        if !self.dirty.iter().any(|d| d == name) {
            self.dirty.push(name.to_string());
        }
    }

    /// Takes in the text of the regs file (`name value` lines); registers the tool has
    /// changed keep the tool's value.
    pub fn load(&mut self, text: &str) -> Result<(), String> {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(n), Some(v)) = (f.next(), f.next()) else {
                continue;
            };
            let v = parse_u64(v).ok_or_else(|| format!("bad value in regs: {line:?}"))?;
            self.poke(n, v);
        }
        Ok(())
    }

    /// The argument of `go` for the changed registers ("" if none), and forgets every
    /// value: once the guest runs, all of them may change.
    pub fn take_go(&mut self) -> String {
        let mut s = String::new();
        for n in self.dirty.drain(..) {
            if let Some(v) = self.val.get(&n) {
                s.push_str(&format!("{n}={v:#x};"));
            }
        }
        self.val.clear();
        s
    }

    /// The changed registers as regs-file lines (for writing outside a `go`), marking
    /// them clean.
    pub fn take_lines(&mut self) -> String {
        let mut s = String::new();
        for n in self.dirty.drain(..) {
            if let Some(v) = self.val.get(&n) {
                s.push_str(&format!("{n} {v:#x}\n"));
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
        r.poke("pc", 0x1000);
        r.poke("ax", 5);
        assert_eq!(r.take_go(), "");
        r.poke("pc", 0x1000);
        r.set("pc", 0x1002);
        r.set("ax", 0x41);
        r.set("pc", 0x1003);
        assert_eq!(r.known("pc"), Some(0x1003));
        assert_eq!(r.take_go(), "pc=0x1003;ax=0x41;");
        assert_eq!(r.known("pc"), None);
    }

    #[test]
    fn load_keeps_dirty_values() {
        let mut r = Regs::new();
        r.set("ax", 7);
        r.load("pc 0x0000000000100000\nax 0x0000000000000001\ncs 0x0010\nbogus\n")
            .unwrap();
        assert_eq!(r.known("ax"), Some(7));
        assert_eq!(r.known("pc"), Some(0x100000));
        assert_eq!(r.known("cs"), Some(0x10));
        assert!(r.load("pc zz").is_err());
        assert_eq!(r.take_lines(), "ax 0x7\n");
        assert_eq!(r.take_go(), "");
    }
}
