//! The kernel command line: `owner=NAME serve=uart,virtio log=info cpus=N`. Unknown words (GRUB
//! puts the kernel's path first) are ignored.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The host owner's uname: owns the served files, as eve in Plan 9.
    pub owner: String,
    pub uart: bool,
    pub virtio: bool,
    pub log: log::LevelFilter,
    /// `selftest=vmx`: prove VMXON and a guest entry at boot, before serving.
    pub selftest_vmx: bool,
    /// `selftest=fault`: take a page fault at boot (the exception path's test).
    pub selftest_fault: bool,
    /// `echo=LINK,...`: links (by label, e.g. `virtio:9p.1`) that echo bytes back instead
    /// of serving 9P, to measure the raw transport beside 9P.
    pub echo: Vec<String>,
    /// `cpus=N`: start at most N CPUs, the boot CPU included (at least 1; default all the
    /// firmware lists), as plan9.ini's `*ncpu`.
    pub cpus: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            owner: "eve".to_string(),
            uart: true,
            virtio: true,
            log: log::LevelFilter::Info,
            selftest_vmx: false,
            selftest_fault: false,
            echo: Vec::new(),
            cpus: None,
        }
    }
}

pub fn parse(line: &str) -> Config {
    let mut c = Config::default();
    for word in line.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        match key {
            "owner" if !value.is_empty() => c.owner = value.to_string(),
            "serve" => {
                c.uart = value.split(',').any(|t| t == "uart");
                c.virtio = value.split(',').any(|t| t == "virtio");
            }
            "selftest" => {
                c.selftest_vmx = value.split(',').any(|t| t == "vmx");
                c.selftest_fault = value.split(',').any(|t| t == "fault");
            }
            "cpus" => c.cpus = value.parse().ok().filter(|&n| n >= 1),
            "echo" => c.echo = value.split(',').map(|t| t.to_string()).collect(),
            "log" => {
                if let Ok(l) = value.parse() {
                    c.log = l;
                }
            }
            _ => {}
        }
    }
    c
}
