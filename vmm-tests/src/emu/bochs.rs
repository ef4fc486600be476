//! Launching the ISO under Bochs: `qemu/bochsrc.in` filled in, COM1 relayed.

use super::relay::relay;
use super::{free_port, iso, run_dir, workspace, Kind, Machine, Opts, Slot, NET_READY};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

impl Machine {
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
        // The relay's threads end with the machine (killed on drop).
        let _ = relay(com1, uart);
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
}
