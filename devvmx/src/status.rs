//! The root `status` file: what the host tells the namespace about itself ([`Facts`],
//! handed over whole whenever it changes) and the file's text.

use crate::hw::PAGE;
use crate::owner::Owners;
use crate::table::VmTable;
use alloc::format;
use alloc::string::String;

/// What the host knows and the namespace shows (status) or checks (attach). The host
/// (the kernel's server loop, or a test) keeps it and hands it over with
/// [`crate::Namespace::set_facts`].
#[derive(Clone, PartialEq)]
pub struct Facts {
    /// CPUs the machine runs.
    pub cpus: usize,
    /// Sessions with a client attached.
    pub sessions: usize,
    /// Where network clients reach the host ("tcp!10.0.2.15!564").
    pub network: Option<String>,
    /// Who may be the owner on network links: the secret, and which sessions serve one.
    pub owners: Owners,
    /// The host's Ethernet switch, when it runs one: its lines of the status file, each
    /// `switch ...` and ending in a newline.
    pub switch: Option<String>,
}

impl Default for Facts {
    /// One CPU, no session, no network.
    fn default() -> Self {
        Facts {
            cpus: 1,
            sessions: 0,
            network: None,
            owners: Owners::default(),
            switch: None,
        }
    }
}

/// What the status file shows besides the facts.
pub(crate) struct Shown<'a> {
    pub version: &'a str,
    pub owner: &'a str,
    /// Frames free and in all.
    pub frames: (usize, usize),
    pub segments: usize,
}

/// The root status file's text.
pub(crate) fn text(shown: &Shown<'_>, facts: &Facts, vms: &VmTable) -> String {
    let pg = PAGE as u64;
    let mut s = format!(
        "version {}\nowner {}\nmemfree {}\nmemtotal {}\ncpus {}\nvms {}\nsegments {}\nsessions {}\n{}{}\n",
        shown.version,
        shown.owner,
        shown.frames.0 as u64 * pg,
        shown.frames.1 as u64 * pg,
        facts.cpus,
        vms.count(),
        shown.segments,
        facts.sessions,
        match &facts.network {
            Some(a) => format!("net {a}\n"),
            None => String::new(),
        },
        match vms.unavailable() {
            None => String::from("vmx ok"),
            Some(why) => format!("vmx unavailable: {why}"),
        }
    );
    // Where each VM runs, once other CPUs run them (with one CPU, as before).
    if vms.spread() {
        for p in vms.iter() {
            s.push_str(&format!("vm {} cpu {}\n", p.index, p.cpu));
        }
    }
    // Once any VM has asked for in-kernel devices: what they answered.
    if let Some(c) = vms.inside_counts() {
        s.push_str(&format!(
            "inkernel io {} hlt {} irq {} cpu {}\n",
            c.io, c.hlt, c.irq, c.cpu
        ));
    }
    if let Some(sw) = &facts.switch {
        s.push_str(sw);
    }
    s
}
