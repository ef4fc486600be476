//! Boots the hypervisor ISO under QEMU or Bochs and hands out 9P connections to it.
//!
//! Every machine exposes its 9P links as unix sockets in a directory of its own:
//! `uart.sock` (COM1) always, `virtio0.sock`, `virtio1.sock`, ... under QEMU. QEMU serves
//! those sockets itself; for Bochs, whose COM1 is a TCP client that connects once at power
//! on, the harness listens first and relays COM1 to `uart.sock`, so clients may disconnect
//! and reconnect as with QEMU. The kernel's log (port 0xE9) is captured to `e9.log`; a boot
//! that does not reach "ready" in time panics with the log's tail. The emulator is killed
//! when the [`Machine`] is dropped.

//!
//! One job a file: [`build`] makes the kernel and its ISO, [`qemu`] and [`bochs`] launch
//! them (the QEMU arguments shared with `qemu/run` come from `qemu/flags`), [`relay`]
//! serves Bochs's COM1, [`client`] hands out 9P connections, [`raw`] holds the byte-level
//! helpers, and [`vtx`] chooses what runs the VT-x tests (Bochs, or QEMU on KVM). This file
//! holds the options, the machine and its log.

pub mod bochs;
pub mod build;
pub mod client;
pub mod qemu;
pub mod raw;
pub mod relay;
pub mod vtx;

pub use bochs::BochsConfig;
pub use build::{iso, kernel_elf, target_dir, workspace};
pub use raw::{python, sync, tversion, MSIZE};
pub use vtx::vtx_kind;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The line the kernel logs once it serves its links.
const READY: &str = "INFO  ready; owner ";

#[derive(Clone, Debug)]
pub struct Opts {
    /// Kernel command line (GRUB's, after the kernel path).
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub mem_mb: u32,
    /// virtio-serial ports (QEMU only).
    pub virtio_ports: usize,
    /// Bochs's emulated instructions per second: serial speed follows emulated time.
    pub ips: u64,
    /// How long boot may take, to the kernel's "ready".
    pub boot_timeout: Duration,
    /// The log line that means the boot is done (default: the kernel's "ready").
    pub until: &'static str,
    /// CPUs (QEMU `-smp`, Bochs `cpu: count`). The default is `HV_CPUS` from the
    /// environment, else 1, so a whole test file can run on more CPUs unchanged
    /// (`HV_CPUS=2 cargo test -p vmm-tests --test vmx_bochs`).
    pub cpus: u32,
    /// QEMU only: load the kernel with `-kernel` (its Multiboot1 header, a.out kludge)
    /// instead of booting GRUB from the ISO.
    pub direct: bool,
    /// A NIC on the emulator's user-mode network, its TCP port 564 forwarded from a free
    /// port on 127.0.0.1 ([`Machine::tcp_port`]). Needs `net` in `serve=` (or no `serve=`).
    pub nic: Option<Nic>,
    /// With `nic`: also forward a free port to the kernel's port 7, for a command line with
    /// `echoport=7` ([`Machine::tcp_echo_port`]).
    pub tcp_echo: bool,
    /// QEMU: where the host forward goes in the guest (for `ip=` and `port=` on the
    /// command line): address ("" for DHCP's) and port.
    pub guest_fwd: (&'static str, u16),
    /// Bochs only: emulated time never runs ahead of the host's (`clock: sync=slowdown`).
    /// An idle Bochs otherwise races through emulated seconds in host milliseconds, so a
    /// client slower than the harness's (Linux under QEMU writes a message in pieces) can
    /// look gone to the kernel's 2 s partial-message rule. Costs serial speed.
    pub slowdown: bool,
    /// More QEMU arguments, after the harness's own (a machine type, firmware).
    pub qemu_args: Vec<String>,
}

/// The NIC models the kernel drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nic {
    VirtioNet,
    E1000,
    /// The 82574L (QEMU only).
    E1000e,
}

/// The log line that says the kernel serves 9P over TCP.
const NET_READY: &str = "; 9P on tcp!";

/// A free TCP port on 127.0.0.1 for a host forward, never the same twice in this process
/// (tests run in parallel; the kernel picks ephemeral ports in sequence, so a port just
/// released is not handed to another process at once).
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = l.local_addr().expect("local address").port();
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            cmdline: "owner=eve serve=uart,virtio".into(),
            mem_mb: 256,
            virtio_ports: 2,
            ips: 8_000_000,
            boot_timeout: Duration::from_secs(90),
            direct: false,
            until: READY,
            cpus: std::env::var("HV_CPUS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n >= 1)
                .unwrap_or(1),
            nic: None,
            tcp_echo: false,
            guest_fwd: ("", 564),
            slowdown: false,
            qemu_args: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Qemu,
    Bochs,
}

/// At most two emulators at once per test process (the machines have two cores; Bochs
/// boots too slowly when starved).
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

static SLOTS: Slots = Slots {
    used: Mutex::new(0),
    freed: Condvar::new(),
};
const MAX_MACHINES: usize = 2;

struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = SLOTS.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= MAX_MACHINES {
            used = SLOTS.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.used.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        SLOTS.freed.notify_one();
    }
}

pub struct Machine {
    pub kind: Kind,
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    virtio_ports: usize,
    /// The host ports forwarded to the kernel's TCP port 564, and to port 7.
    tcp_port: Option<u16>,
    tcp_echo_port: Option<u16>,
    _slot: Slot,
}

fn run_dir(kind: Kind) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hv-{}-{}-{}",
        match kind {
            Kind::Qemu => "qemu",
            Kind::Bochs => "bochs",
        },
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the machine's directory");
    dir
}

impl Machine {
    /// Waits for `what` in the kernel's log; panics with the log's tail after `timeout`
    /// or when the emulator has exited.
    pub fn wait_log(&mut self, what: &str, timeout: Duration) {
        if !self.wait_log_alive(what, timeout) {
            panic!(
                "{:?} exited before {what:?} in the kernel's log:\n{}",
                self.kind,
                self.diagnostics()
            );
        }
    }

    /// Waits for `what` in the kernel's log: false as soon as the emulator has exited
    /// without it; panics with the log's tail after `timeout`.
    fn wait_log_alive(&mut self, what: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.log().contains(what) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // The last words may land in the log as the process ends.
                return self.log().contains(what);
            }
            if start.elapsed() > timeout {
                panic!(
                    "{:?}: no {what:?} in the kernel's log within {timeout:?}:\n{}",
                    self.kind,
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the emulator to exit by itself; its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for the emulator") {
                return st.code();
            }
            if start.elapsed() > timeout {
                panic!(
                    "{:?} still runs after {timeout:?}:\n{}",
                    self.kind,
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The kernel's log so far (for Bochs, with Bochs's own messages).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The log's line for the NIC the kernel served, `MODEL Bdf {..} ...: mac [..], MODE...`
    /// (MODE: how it signals, e.g. `msi-x vector 50 (entry 0 of 3)`, `msi vector 50`,
    /// `intx irq 11`).
    pub fn nic_line(&self, model: &str) -> String {
        let log = self.log();
        let start = format!("{model} Bdf");
        log.lines()
            .find(|l| l.contains(&start) && l.contains(": mac "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {start:?} line in the log:\n{log}"))
    }

    /// Whether the kernel has logged that a device's MSI or MSI-X message reached it.
    pub fn got_device_message(&self) -> bool {
        self.log()
            .contains("irq: the first device message arrived on vector 50")
    }

    /// The last lines of the log and of the emulator's error output, for failure messages.
    pub fn diagnostics(&self) -> String {
        let tail = |text: String, n: usize| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let err = ["qemu.err", "bochs.err", "bochs.log"]
            .iter()
            .filter_map(|f| std::fs::read(self.dir.join(f)).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map(|t| tail(t, 15))
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "--- log tail ({}) ---\n{}\n--- emulator ---\n{}",
            self.log.display(),
            tail(self.log(), 30),
            err
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// COM1's unix socket.
    pub fn uart_path(&self) -> PathBuf {
        self.dir.join("uart.sock")
    }

    /// A virtio-serial port's unix socket (QEMU).
    pub fn virtio_path(&self, port: usize) -> PathBuf {
        assert!(port < self.virtio_ports, "no virtio port {port}");
        self.dir.join(format!("virtio{port}.sock"))
    }

    /// The main link's socket: virtio port 0 under QEMU, COM1 under Bochs.
    pub fn main_path(&self) -> PathBuf {
        if self.virtio_ports > 0 {
            self.virtio_path(0)
        } else {
            self.uart_path()
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
