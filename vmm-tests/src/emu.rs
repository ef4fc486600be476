//! Boots the hypervisor ISO under QEMU or Bochs and hands out 9P connections to it.
//!
//! Every machine exposes its 9P links as unix sockets in a directory of its own:
//! `uart.sock` (COM1) always, `virtio0.sock`, `virtio1.sock`, ... under QEMU. QEMU serves
//! those sockets itself; for Bochs, whose COM1 is a TCP client that connects once at power
//! on, the harness listens first and relays COM1 to `uart.sock`, so clients may disconnect
//! and reconnect as with QEMU. The kernel's log (port 0xE9) is captured to `e9.log`; a boot
//! that does not reach "ready" in time panics with the log's tail. The emulator is killed
//! when the [`Machine`] is dropped.

use ninep_client::Client;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
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

/// What fills in `qemu/bochsrc.in`'s `@...@` fields: the one place that knows them (the
/// `qemu/bochs` script fills the same fields with sed).
pub struct BochsConfig<'a> {
    pub mem_mb: u32,
    pub ips: u64,
    pub cpus: u32,
    pub iso: &'a Path,
    /// The host port COM1 connects to (a listener must be there first).
    pub com1_port: u16,
    /// Lines for the NIC (`pci:` and `e1000:`), or empty.
    pub nic: &'a str,
    /// `clock: sync=slowdown` instead of `none`.
    pub slowdown: bool,
    pub log: &'a Path,
}

impl BochsConfig<'_> {
    pub fn render(&self) -> String {
        std::fs::read_to_string(workspace().join("qemu/bochsrc.in"))
            .expect("read qemu/bochsrc.in")
            .replace("@MEGS@", &self.mem_mb.to_string())
            .replace("@IPS@", &self.ips.to_string())
            .replace("@CPUS@", &self.cpus.to_string())
            .replace("@ISO@", &self.iso.display().to_string())
            .replace("@PORT@", &self.com1_port.to_string())
            .replace("@NIC@", self.nic)
            .replace("@SYNC@", if self.slowdown { "slowdown" } else { "none" })
            .replace("@LOG@", &self.log.display().to_string())
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

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds the kernel and an ISO for `cmdline` once per test process (qemu/build-iso), in a
/// target directory of its own so the nested cargo does not wait on the outer one's lock.
pub fn iso(cmdline: &str) -> PathBuf {
    static ISOS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut isos = ISOS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = isos.get(cmdline) {
        return p.clone();
    }
    let ws = workspace();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let dir = target.join("vmm-iso");
    std::fs::create_dir_all(&dir).expect("create the ISO directory");
    // One file per command line, rebuilt once per test process (so never a stale kernel).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(cmdline, &mut h);
    let path = dir.join(format!(
        "hypervisor-{:016x}.iso",
        std::hash::Hasher::finish(&h)
    ));
    let out = Command::new(ws.join("qemu/build-iso"))
        .env("CARGO", env!("CARGO"))
        .env("HV_CMDLINE", cmdline)
        .env("HV_ISO", &path)
        .env("CARGO_TARGET_DIR", target.join("vmm-kernel"))
        .current_dir(&ws)
        .output()
        .expect("run qemu/build-iso");
    assert!(
        out.status.success(),
        "qemu/build-iso failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    isos.insert(cmdline.to_string(), path.clone());
    path
}

/// The kernel ELF that `iso` built.
pub fn kernel_elf() -> PathBuf {
    let ws = workspace();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"))
        .join("vmm-kernel/x86_64-unknown-none/release/hypervisor")
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

fn has_nested_vmx() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .any(|l| l.starts_with("flags") && l.split_whitespace().any(|w| w == "vmx"))
    }) && std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

impl Machine {
    /// Boots the ISO under QEMU (KVM with nested VT-x where the host has it, else TCG).
    pub fn qemu(opts: Opts) -> Machine {
        let iso = iso(&opts.cmdline);
        let slot = Slot::take();
        let dir = run_dir(Kind::Qemu);
        let log = dir.join("e9.log");
        let (accel, cpu) = if has_nested_vmx() {
            ("kvm", "host,+vmx")
        } else {
            ("tcg", "max")
        };
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", accel, "-cpu", cpu, "-m"])
            .arg(opts.mem_mb.to_string())
            .arg("-smp")
            .arg(opts.cpus.to_string())
            .args(["-display", "none", "-no-reboot", "-monitor", "none"]);
        if opts.direct {
            cmd.arg("-kernel")
                .arg(kernel_elf())
                .arg("-append")
                .arg(&opts.cmdline);
        } else {
            cmd.arg("-cdrom").arg(&iso).args(["-boot", "d"]);
        }
        cmd.arg("-debugcon")
            .arg(format!("file:{}", log.display()))
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=com1,path={},server=on,wait=off",
                dir.join("uart.sock").display()
            ))
            .args(["-serial", "chardev:com1"]);
        let tcp_echo_port = (opts.nic.is_some() && opts.tcp_echo).then(free_port);
        let tcp_port = opts.nic.map(|nic| {
            let port = free_port();
            let echo = tcp_echo_port
                .map(|p| format!(",hostfwd=tcp:127.0.0.1:{p}-:7"))
                .unwrap_or_default();
            let (ga, gp) = opts.guest_fwd;
            cmd.arg("-netdev")
                .arg(format!(
                    "user,id=n0,hostfwd=tcp:127.0.0.1:{port}-{ga}:{gp}{echo}"
                ))
                .arg("-device")
                .arg(match nic {
                    Nic::VirtioNet => "virtio-net-pci,netdev=n0",
                    Nic::E1000 => "e1000,netdev=n0",
                    Nic::E1000e => "e1000e,netdev=n0",
                });
            port
        });
        if opts.virtio_ports > 0 {
            cmd.args(["-device", "virtio-serial-pci,id=vser"]);
            for i in 0..opts.virtio_ports {
                cmd.arg("-chardev")
                    .arg(format!(
                        "socket,id=vp{i},path={},server=on,wait=off",
                        dir.join(format!("virtio{i}.sock")).display()
                    ))
                    .arg("-device")
                    .arg(format!(
                        "virtserialport,bus=vser.0,chardev=vp{i},name=9p.{i}"
                    ));
            }
        }
        cmd.args(&opts.qemu_args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.err")).expect("create qemu.err"))
            .spawn()
            .expect("start qemu-system-x86_64 (is QEMU installed?)");
        let mut m = Machine {
            kind: Kind::Qemu,
            child,
            dir,
            log,
            virtio_ports: opts.virtio_ports,
            tcp_port,
            tcp_echo_port,
            _slot: slot,
        };
        m.wait_log(opts.until, opts.boot_timeout);
        if tcp_port.is_some() {
            m.wait_log(NET_READY, opts.boot_timeout);
        }
        m
    }

    /// Boots the ISO under Bochs (cpu corei7_haswell_4770: VMX with EPT, VPID and
    /// unrestricted guest), COM1 relayed to `uart.sock`.
    pub fn bochs(opts: Opts) -> Machine {
        // Debian's Bochs has no headless display: each instance binds an RFB port in
        // 5900-5949 and dies at power-on when it finds none free. That is the emulator
        // failing to start, not the kernel failing: start it again, a few times.
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            match Self::bochs_once(&opts) {
                Ok(m) => return m,
                Err(m) if attempt < ATTEMPTS && m.diagnostics().contains("RFB could not bind") => {
                    eprintln!("emu: Bochs found no free RFB port; starting it again");
                    drop(m);
                    thread::sleep(Duration::from_secs(5));
                }
                Err(m) => panic!(
                    "Bochs exited before {:?} in the kernel's log:\n{}",
                    opts.until,
                    m.diagnostics()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One Bochs start: `Err` with the machine when Bochs exits before the kernel is ready.
    fn bochs_once(opts: &Opts) -> Result<Machine, Machine> {
        let iso = iso(&opts.cmdline);
        let slot = Slot::take();
        let dir = run_dir(Kind::Bochs);
        let log = dir.join("e9.log");
        // Listen before Bochs starts: it connects once, at power-on.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port for COM1");
        let port = listener.local_addr().expect("COM1 port").port();
        let uart = UnixListener::bind(dir.join("uart.sock")).expect("bind uart.sock");
        // Bochs has e1000 only; its slirp listens on the forward itself.
        let tcp_port = opts.nic.map(|_| free_port());
        let tcp_echo_port = (opts.nic.is_some() && opts.tcp_echo).then(free_port);
        let nic = match tcp_port {
            Some(p) => {
                let script = dir.join("slirp.conf");
                let echo = tcp_echo_port
                    .map(|e| format!("hostfwd = tcp:127.0.0.1:{e}-:7\n"))
                    .unwrap_or_default();
                std::fs::write(
                    &script,
                    format!("# slirp config\nhostfwd = tcp:127.0.0.1:{p}-:564\n{echo}"),
                )
                .expect("write slirp.conf");
                format!(
                    "pci: enabled=1, chipset=i440fx, slot1=e1000\n\
                     e1000: enabled=1, mac=52:54:00:12:34:56, ethmod=slirp, script={}",
                    script.display()
                )
            }
            None => String::new(),
        };
        let rc = BochsConfig {
            mem_mb: opts.mem_mb,
            ips: opts.ips,
            cpus: opts.cpus,
            iso: &iso,
            com1_port: port,
            nic: &nic,
            slowdown: opts.slowdown,
            log: &dir.join("bochs.log"),
        }
        .render();
        std::fs::write(dir.join("bochsrc"), rc).expect("write bochsrc");
        std::fs::write(dir.join("rc"), "c\nquit\n").expect("write the debugger rc");
        let child = Command::new("bochs")
            .args(["-q", "-f", "bochsrc", "-rc", "rc"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("create e9.log"))
            .stderr(std::fs::File::create(dir.join("bochs.err")).expect("create bochs.err"))
            .spawn()
            .expect("start bochs (is Bochs installed?)");
        let mut m = Machine {
            kind: Kind::Bochs,
            child,
            dir,
            log,
            virtio_ports: 0,
            tcp_port,
            tcp_echo_port,
            _slot: slot,
        };
        let com1 = m.accept_com1(&listener, opts.boot_timeout);
        relay(com1, uart);
        if m.wait_log_alive(opts.until, opts.boot_timeout)
            && (tcp_port.is_none() || m.wait_log_alive(NET_READY, opts.boot_timeout))
        {
            Ok(m)
        } else {
            Err(m)
        }
    }

    fn accept_com1(&mut self, listener: &TcpListener, timeout: Duration) -> TcpStream {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let start = Instant::now();
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking COM1 stream");
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    return s;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept Bochs's COM1 connection: {e}"),
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "Bochs exited ({st}) before connecting COM1:\n{}",
                    self.diagnostics()
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "Bochs did not connect COM1 within {timeout:?}:\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

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

    /// A Plan 9 dial string for a socket (`unix!/path`).
    pub fn dial_string(path: &Path) -> String {
        format!("unix!{}", path.display())
    }

    /// A raw connection to a link, for byte-level tests.
    pub fn raw(&self, path: &Path) -> UnixStream {
        let s = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect {}: {e}\n{}", path.display(), self.diagnostics()));
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s
    }

    /// A 9P client attached as `uname` to `aname` over the socket at `path`.
    ///
    /// A serial line has no connect signal, and an emulator may drop the last bytes a
    /// previous client sent when it hung up: the kernel can then hold half a message that
    /// swallows the start of our Tversion. So the link is first synchronised as a serial
    /// client must: Tversion until an Rversion comes back (the kernel's framer resyncs on
    /// the garbage that follows a swallowed one). The client then starts its own session.
    pub fn client_on(&self, path: &Path, uname: &str, aname: &str) -> Client {
        self.client_msize(path, uname, aname, MSIZE)
    }

    /// As `client_on`, offering `msize`.
    pub fn client_msize(&self, path: &Path, uname: &str, aname: &str, msize: u32) -> Client {
        let mut s = self.raw(path);
        if let Err(e) = sync(&mut s) {
            panic!(
                "no Rversion on {}: {e}\n{}",
                path.display(),
                self.diagnostics()
            );
        }
        s.set_read_timeout(None).ok();
        let c = Client::over_msize(s, uname, aname, msize).unwrap_or_else(|e| {
            panic!(
                "9P attach as {uname:?} to {aname:?} on {}: {e}\n{}",
                path.display(),
                self.diagnostics()
            )
        });
        c.set_timeout(Some(Duration::from_secs(30)));
        c
    }

    /// The host port forwarded to the kernel's 9P port (with `Opts::nic`).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port.expect("the machine has no NIC (Opts::nic)")
    }

    /// The host port forwarded to the kernel's echo port (with `Opts::tcp_echo`).
    pub fn tcp_echo_port(&self) -> u16 {
        self.tcp_echo_port
            .expect("no echo forward (Opts::tcp_echo)")
    }

    /// `tcp!127.0.0.1!PORT`.
    pub fn tcp_dial(&self) -> String {
        format!("tcp!127.0.0.1!{}", self.tcp_port())
    }

    /// A raw TCP connection to the kernel's 9P port.
    pub fn tcp_raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.tcp_port()))
            .unwrap_or_else(|e| panic!("connect to the 9P port: {e}\n{}", self.diagnostics()));
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.set_nodelay(true).ok();
        s
    }

    /// A 9P client over TCP, attached as `uname` to `aname`: a stream needs no resync.
    pub fn tcp_client(&self, uname: &str, aname: &str) -> Client {
        self.try_tcp_client(uname, aname).unwrap_or_else(|e| {
            panic!(
                "9P attach as {uname:?} to {aname:?} over TCP: {e}\n{}",
                self.diagnostics()
            )
        })
    }

    /// As `tcp_client`, for attaches that may be refused.
    pub fn try_tcp_client(&self, uname: &str, aname: &str) -> Result<Client, String> {
        let s = self.tcp_raw();
        s.set_read_timeout(None).ok();
        let c = Client::over_msize(s, uname, aname, MSIZE).map_err(|e| e.to_string())?;
        c.set_timeout(Some(Duration::from_secs(30)));
        Ok(c)
    }

    /// A 9P client on the main link.
    pub fn client(&self, uname: &str, aname: &str) -> Client {
        self.client_on(&self.main_path(), uname, aname)
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

/// Relays Bochs's COM1 stream to clients of `uart`, one at a time. Bytes from the machine
/// while no client is connected are dropped.
fn relay(com1: TcpStream, uart: UnixListener) {
    let client: Arc<Mutex<Option<UnixStream>>> = Arc::new(Mutex::new(None));
    let mut from = com1.try_clone().expect("clone COM1");
    let to_client = client.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            // Bochs sends a byte per segment with Nagle on: acknowledge at once, or each
            // next byte waits for a delayed ACK (about 40 ms a round trip).
            let _ = socket2::SockRef::from(&from).set_tcp_quickack(true);
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(c) = to_client.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                        let _ = c.write_all(&buf[..n]);
                    }
                }
            }
        }
    });
    let mut to = com1;
    thread::spawn(move || {
        for c in uart.incoming() {
            let Ok(mut c) = c else { return };
            *client.lock().unwrap_or_else(|e| e.into_inner()) = c.try_clone().ok();
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            *client.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    });
}

/// The msize the harness's clients offer.
pub const MSIZE: u32 = 8192 + 24;

/// A Tversion message (tag NOTAG).
pub fn tversion(msize: u32) -> Vec<u8> {
    let v = b"9P2000";
    let size = 4 + 1 + 2 + 4 + 2 + v.len();
    let mut m = Vec::with_capacity(size);
    m.extend_from_slice(&(size as u32).to_le_bytes());
    m.push(100);
    m.extend_from_slice(&0xffffu16.to_le_bytes());
    m.extend_from_slice(&msize.to_le_bytes());
    m.extend_from_slice(&(v.len() as u16).to_le_bytes());
    m.extend_from_slice(v);
    m
}

/// Sends Tversion until an Rversion (tag NOTAG) comes back; skips whatever precedes it.
pub fn sync(s: &mut UnixStream) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..8 {
        s.write_all(&tversion(MSIZE))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut h = [0u8; 7];
        let found = (|| -> std::io::Result<()> {
            s.read_exact(&mut h)?;
            // Rversion, tag NOTAG, a size that fits one.
            while !(h[4] == 101
                && h[5] == 0xff
                && h[6] == 0xff
                && h[0] >= 13
                && h[1..4] == [0, 0, 0])
            {
                h.copy_within(1.., 0);
                s.read_exact(&mut h[6..])?;
            }
            let mut rest = vec![0u8; h[0] as usize - 7];
            s.read_exact(&mut rest)
        })();
        match found {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no Rversion")))
}

/// Runs a python-9p (py9p) script with `args`; panics with its output unless it succeeds.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python-9p script failed:\n{text}");
    text
}
