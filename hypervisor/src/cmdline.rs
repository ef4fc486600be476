//! The kernel command line: `owner=NAME secret=S serve=uart,virtio,net ip=ADDR/LEN gw=ADDR
//! port=N log=info cpus=N switch`. Unknown words (GRUB puts the kernel's path first) are
//! ignored.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The host owner's uname: owns the served files, as eve in Plan 9.
    pub owner: String,
    /// `secret=`: what a network client presents in its attach name to be the owner.
    pub secret: Option<Secret>,
    pub uart: bool,
    pub virtio: bool,
    /// Serve 9P over TCP on the first NIC.
    pub net: bool,
    /// `ip=ADDR/LEN` (static address; DHCP without it) and `gw=ADDR`.
    pub ip: Option<([u8; 4], u8)>,
    pub gw: Option<[u8; 4]>,
    /// `port=N`: the TCP port 9P is served on (564, the 9fs port, by default).
    pub port: u16,
    /// `echoport=N`: a TCP port whose connections echo bytes (for `bench-transport`).
    pub echo_port: Option<u16>,
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
    /// `switch`: the NIC is the uplink of the hypervisor's Ethernet switch (promiscuous),
    /// the kernel's interface one of its ports (`switch.rs`).
    pub switch: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            owner: "eve".to_string(),
            secret: None,
            uart: true,
            virtio: true,
            net: true,
            ip: None,
            gw: None,
            port: 564,
            echo_port: None,
            log: log::LevelFilter::Info,
            selftest_vmx: false,
            selftest_fault: false,
            echo: Vec::new(),
            cpus: None,
            switch: false,
        }
    }
}

pub fn parse(line: &str) -> Config {
    let mut c = Config::default();
    for word in line.split_ascii_whitespace() {
        if word == "switch" {
            c.switch = true;
            continue;
        }
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        match key {
            "owner" if !value.is_empty() => c.owner = value.to_string(),
            "secret" if !value.is_empty() => c.secret = Some(Secret(value.to_string())),
            "serve" => {
                c.uart = value.split(',').any(|t| t == "uart");
                c.virtio = value.split(',').any(|t| t == "virtio");
                c.net = value.split(',').any(|t| t == "net");
            }
            "echoport" => c.echo_port = value.parse().ok().filter(|&p| p > 0),
            "ip" => c.ip = parse_cidr(value),
            "gw" => c.gw = parse_ipv4(value),
            "port" => {
                if let Ok(p @ 1..) = value.parse() {
                    c.port = p;
                }
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

/// The owner's secret: never printed (`Debug` shows a placeholder).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The command line with the secret's value hidden, for the log.
pub fn redacted(line: &str) -> String {
    line.split_ascii_whitespace()
        .map(|w| {
            if w.starts_with("secret=") {
                "secret=..."
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    s.parse::<core::net::Ipv4Addr>().ok().map(|a| a.octets())
}

/// "10.0.2.15/24"
fn parse_cidr(s: &str) -> Option<([u8; 4], u8)> {
    let (addr, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|&l| (1..=32).contains(&l))?;
    Some((parse_ipv4(addr)?, len))
}
