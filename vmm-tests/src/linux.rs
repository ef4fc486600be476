//! Debian's Linux as a 9P client: booted under QEMU TCG from a busybox initramfs, its
//! console (ttyS0) a shell the test types commands at, reaching a 9P server by one of two
//! [`Link`]s: its ttyS1 wired to the server's serial line (a unix socket the harness
//! serves, such as [`Machine::uart_path`](crate::emu::Machine::uart_path)), or TCP from
//! its e1000 on QEMU's user network to the gateway, which QEMU maps to the host's
//! 127.0.0.1 (the client dials [`GATEWAY`] at [`Linux::tcp_port`]). Either way the bytes
//! pass through a relay on the host that records them ([`Linux::ninep_bytes`]).
//!
//! The initramfs is made at test time from the kernel and busybox that `scripts/setup`
//! unpacks (found by `crate::fixtures::images`) with `vmx::cpio`: busybox's archive, then a second
//! archive (the kernel unpacks concatenated archives) holding v9fs's modules and the e1000
//! driver, decompressed on the host when they are `.ko.xz` or `.ko.zst`, and the files a
//! test adds.
//!
//! Each command runs through `eval` in the init shell (so `exec 3<>FILE` keeps its fd for
//! later commands) and is followed by a marker carrying its exit status.

use crate::fixtures::{images, need};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmx::cpio::{self, Entry};

/// `readonce FILE` (linux/readonce.S): one read(2) of FILE opened O_NONBLOCK, to stdout.
/// v9fs repeats Treads until a read(2)'s buffer is full unless the file is O_NONBLOCK, so
/// `cat`, `head` and `dd` of `wait` block for the exit after the one they read.
/// It is in every client's initramfs as /bin/readonce.
pub const READONCE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/readonce"));

/// The modules `mount -t 9p -o trans=fd` and `trans=tcp` need (9pnet_fd has both
/// transports), and the NIC's driver (e1000: no dependencies, unlike virtio_net's five);
/// their dependencies are read from each module's `depends=` and loaded first.
const WANTED: &[&str] = &["9p", "9pnet_fd", "e1000"];

/// The client's address on QEMU's user network (slirp's first DHCP address).
const CLIENT_ADDR: &str = "10.0.2.15/24";

/// Slirp's gateway, which QEMU maps to the host's 127.0.0.1: where a [`Link::Tcp`]
/// client dials.
pub const GATEWAY: &str = "10.0.2.2";

/// How the client reaches the 9P server.
#[derive(Clone, Debug)]
pub enum Link {
    /// ttyS1, wired to this unix socket (a serial line's).
    Serial(PathBuf),
    /// TCP to this port on the host's 127.0.0.1 (a host forward to the server's 564).
    Tcp(u16),
}

/// What init prints once the modules are in and the shell takes commands.
const READY: &str = "v9fs-client-ready";

/// Ends every command's output: `@@END <status>@@`. Written by the init script, never by
/// a command the test sends, so it cannot be mistaken for an echo.
const END: &str = "@@END ";

/// The init shell: mount /dev (the kernel does not for an initramfs), load the modules,
/// make the two serial lines raw (ttyS1 carries 9P), give the NIC (when QEMU has one) its
/// address and wait for its link, then run each line read from the console.
const INIT: &str = r#"
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "insmod $m failed"; done
mkdir -p /mnt /tmp
stty -F /dev/ttyS1 raw -echo
stty -echo -onlcr
if [ -e /sys/class/net/eth0 ]; then
  ip link set lo up
  ip addr add @ADDR@ dev eth0
  ip link set eth0 up
  n=0; until [ "$(cat /sys/class/net/eth0/operstate)" = up ] || [ $n -ge 100 ]; do sleep 0.1; n=$((n+1)); done
  echo "eth0 $(cat /sys/class/net/eth0/operstate)"
fi
echo v9fs-client-ready
while IFS= read -r line; do eval "$line"; echo "@@END $?@@"; done
poweroff -f
"#;

/// A module file under the kernel's `lib/modules/VERSION/kernel`, uncompressed.
fn module(tree: &Path, name: &str) -> Vec<u8> {
    fn find(dir: &Path, stems: &[String]) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(f) = find(&p, stems) {
                    return Some(f);
                }
            } else if p
                .file_name()
                .is_some_and(|n| stems.iter().any(|s| *s == n.to_string_lossy()))
            {
                return Some(p);
            }
        }
        None
    }
    let stems: Vec<String> = ["ko", "ko.xz", "ko.zst"]
        .iter()
        .map(|x| format!("{name}.{x}"))
        .collect();
    let path =
        find(tree, &stems).unwrap_or_else(|| panic!("no module {name} under {}", tree.display()));
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return std::fs::read(&path).unwrap_or_else(|e| panic!("read {name}: {e}"));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(&*path)
        .output()
        .unwrap_or_else(|e| panic!("{tool} -dc {name}: {e} (apt-get install {tool})"));
    assert!(out.status.success(), "{tool} -dc {name} failed");
    out.stdout
}

/// A module's `depends=` list from its `.modinfo` strings.
fn depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    ko.windows(KEY.len())
        .position(|w| w == KEY)
        .map(|at| {
            let rest = &ko[at + KEY.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `names` and what they depend on, each after its dependencies.
fn modules(tree: &Path, names: &[&str]) -> Vec<(String, Vec<u8>)> {
    fn add(tree: &Path, name: &str, out: &mut Vec<(String, Vec<u8>)>, seen: &mut Vec<String>) {
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_string());
        let ko = module(tree, name);
        for d in depends(&ko) {
            add(tree, &d, out, seen);
        }
        out.push((name.to_string(), ko));
    }
    let (mut out, mut seen) = (Vec::new(), Vec::new());
    for n in names {
        add(tree, n, &mut out, &mut seen);
    }
    out
}

/// The kernel's module tree next to its image (`.../boot/vmlinuz-V` and
/// `.../lib/modules/V/kernel`).
fn module_tree(kernel: &Path) -> PathBuf {
    let version = kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_else(|| panic!("{} is not a vmlinuz-VERSION", kernel.display()));
    let root = kernel
        .parent()
        .and_then(Path::parent)
        .expect("the kernel's root");
    let tree = root.join("lib/modules").join(version).join("kernel");
    assert!(
        tree.is_dir(),
        "no modules for {version} in {}: run scripts/setup",
        tree.display()
    );
    tree
}

/// The initramfs: busybox and the init shell, then the modules, `readonce` and `files`
/// (path, data).
pub fn initramfs(kernel: &Path, files: &[(&str, &[u8])]) -> Vec<u8> {
    let busybox = std::fs::read(need(images::busybox())).expect("read busybox");
    let mut img = cpio::busybox_initramfs(&busybox, &INIT.replace("@ADDR@", CLIENT_ADDR));
    let mods = modules(&module_tree(kernel), WANTED);
    let mut entries = vec![
        Entry::Dir {
            path: "modules".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "bin/readonce".into(),
            mode: 0o755,
            data: READONCE.to_vec(),
        },
    ];
    let order: Vec<&str> = mods.iter().map(|(n, _)| n.as_str()).collect();
    entries.push(Entry::File {
        path: "modules/order".into(),
        mode: 0o644,
        data: format!("{}\n", order.join("\n")).into_bytes(),
    });
    for (n, ko) in mods {
        entries.push(Entry::File {
            path: format!("modules/{n}.ko"),
            mode: 0o644,
            data: ko,
        });
    }
    for (path, data) in files {
        entries.push(Entry::File {
            path: path.to_string(),
            mode: 0o755,
            data: data.to_vec(),
        });
    }
    img.extend_from_slice(&cpio::archive(&entries));
    img
}

/// A Linux client machine under QEMU TCG; killed when dropped.
pub struct Linux {
    child: Child,
    dir: PathBuf,
    console: UnixStream,
    /// Everything the console printed so far.
    transcript: String,
    /// With [`Link::Tcp`]: the relay's port on the host's 127.0.0.1.
    tcp_port: Option<u16>,
}

/// The relay's record of the 9P bytes, in the client's directory.
const TRACE: &str = "9p.trace";

impl Linux {
    /// Boots Debian's kernel with [`initramfs`] (plus `files`), able to reach the 9P
    /// server by `link`, and waits for its shell.
    pub fn boot(link: Link, files: &[(&str, &[u8])], timeout: Duration) -> Linux {
        let kernel = need(images::debian_kernel());
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "linux-client-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the client's directory");
        let initrd = dir.join("initrd.cpio");
        std::fs::write(&initrd, initramfs(&kernel, files)).expect("write the initramfs");
        // The console is a socket QEMU connects to: nothing it prints is lost.
        let console_path = dir.join("console.sock");
        let listener = UnixListener::bind(&console_path).expect("bind console.sock");
        let mut qemu = Command::new("qemu-system-x86_64");
        // TCG: KVM on these machines hangs this kernel early (shared/notes/emulators.md).
        qemu.args(["-accel", "tcg", "-m", "256", "-display", "none"])
            .args(["-no-reboot", "-monitor", "none"]);
        // The link reaches the server through a relay that records the 9P bytes both ways.
        let trace = dir.join(TRACE);
        let tap = dir.join("ttyS1.sock");
        let tcp_port = match link {
            Link::Serial(serial) => {
                let l = UnixListener::bind(&tap).expect("bind the ttyS1 relay");
                trace_relay(
                    move || Ok(Box::new(l.accept()?.0) as Box<dyn Pipe>),
                    move || Ok(Box::new(UnixStream::connect(&serial)?) as Box<dyn Pipe>),
                    &trace,
                );
                qemu.args(["-nic", "none"]);
                None
            }
            Link::Tcp(server) => {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind the TCP relay");
                let port = l.local_addr().expect("the relay's port").port();
                trace_relay(
                    move || Ok(Box::new(nodelay(l.accept()?.0)?) as Box<dyn Pipe>),
                    move || {
                        let s = TcpStream::connect(("127.0.0.1", server))?;
                        Ok(Box::new(nodelay(s)?) as Box<dyn Pipe>)
                    },
                    &trace,
                );
                // No host forwards: the client only dials out, to the gateway. Not
                // restrict=on: slirp then refuses the gateway too ("Connection refused").
                qemu.args(["-netdev", "user,id=n0", "-device", "e1000,netdev=n0"]);
                Some(port)
            }
        };
        let child = qemu
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            // no_timer_check: on a loaded host TCG can fail the kernel's IO-APIC timer
            // check ("IO-APIC + timer doesn't work!") and panic at boot.
            .args([
                "-append",
                "console=ttyS0 loglevel=1 panic=-1 no_timer_check",
            ])
            .arg("-chardev")
            .arg(format!("socket,id=con,path={}", console_path.display()))
            .args(["-serial", "chardev:con"])
            .arg("-chardev")
            .arg(match tcp_port {
                None => format!("socket,id=ninep,path={}", tap.display()),
                Some(_) => "null,id=ninep".into(),
            })
            .args(["-serial", "chardev:ninep"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.err")).expect("create qemu.err"))
            .spawn()
            .expect("start qemu-system-x86_64 (scripts/setup installs it)");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let start = Instant::now();
        let console = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept QEMU's console: {e}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "QEMU did not connect its console: {}",
                std::fs::read_to_string(dir.join("qemu.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        console.set_nonblocking(false).expect("blocking console");
        let mut l = Linux {
            child,
            dir,
            console,
            transcript: String::new(),
            tcp_port,
        };
        if let Err(e) = l.read_until(|t| t.contains(READY), timeout) {
            panic!("the Linux client did not start its shell: {e}");
        }
        l
    }

    /// Reads the console until `done` holds for the transcript, or `timeout`.
    fn read_until(&mut self, done: impl Fn(&str) -> bool, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while !done(&self.transcript) {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(format!("timed out after {timeout:?}\n{}", self.tail()));
            }
            self.console
                .set_read_timeout(Some(left.min(Duration::from_millis(500))))
                .expect("console read timeout");
            match self.console.read(&mut buf) {
                Ok(0) => return Err(format!("QEMU closed the console\n{}", self.tail())),
                Ok(n) => self
                    .transcript
                    .push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', "")),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("console: {e}\n{}", self.tail())),
            }
        }
        Ok(())
    }

    /// The console's last lines and QEMU's errors, for failure messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.transcript.lines().collect();
        format!(
            "--- Linux console tail ---\n{}\n--- qemu.err ---\n{}--- 9P bytes: {} ---",
            lines[lines.len().saturating_sub(40)..].join("\n"),
            std::fs::read_to_string(self.dir.join("qemu.err")).unwrap_or_default(),
            self.dir.join(TRACE).display()
        )
    }

    /// With [`Link::Tcp`]: the port the client dials at [`GATEWAY`].
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
            .expect("the client has no TCP link (Link::Tcp)")
    }

    /// The 9P bytes the client sent (`to_server`) or received, as one stream each, from the
    /// relay's record: its connections one after another (each mount over TCP is one).
    pub fn ninep_bytes(&self, to_server: bool) -> Vec<u8> {
        let dir = if to_server { " c>s " } else { " s>c " };
        std::fs::read_to_string(self.dir.join(TRACE))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(dir))
            .filter_map(|l| l.rsplit(' ').next())
            .flat_map(|hex| {
                (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect::<Vec<u8>>()
            })
            .collect()
    }

    /// Runs `cmd` (one line) in the client's shell: its exit status and output (stdout and
    /// stderr), or why none came within `timeout`.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String), String> {
        assert!(
            !cmd.contains('\n') && !cmd.contains(END),
            "one line, no marker: {cmd:?}"
        );
        let from = self.transcript.len();
        self.console
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| format!("console write: {e}"))?;
        let ended = |t: &str| t[from..].contains(END) && t[from..].ends_with("@@\n");
        self.read_until(ended, timeout)
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        let out = &self.transcript[from..];
        let at = out.rfind(END).expect("the marker");
        let status = out[at + END.len()..]
            .trim_end()
            .trim_end_matches('@')
            .parse()
            .map_err(|e| format!("{cmd:?}: bad marker {:?}: {e}", &out[at..]))?;
        Ok((status, out[..at].to_string()))
    }
}

/// A byte stream of either kind the relay joins.
trait Pipe: Read + Write + Send {
    fn dup(&self) -> std::io::Result<Box<dyn Pipe>>;
    /// Ends the stream this way (the other way stays open).
    fn close_write(&self);
}

impl Pipe for UnixStream {
    fn dup(&self) -> std::io::Result<Box<dyn Pipe>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Pipe for TcpStream {
    fn dup(&self) -> std::io::Result<Box<dyn Pipe>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// A TCP stream that sends each write at once: 9P is request and reply.
fn nodelay(s: TcpStream) -> std::io::Result<TcpStream> {
    s.set_nodelay(true)?;
    Ok(s)
}

/// Relays each connection `accept` gives to a new one from `connect`, in turn, writing
/// every chunk each way to `trace` as `SECONDS CONNECTION DIRECTION LEN: HEX` (`c>s` from
/// the client).
fn trace_relay(
    accept: impl Fn() -> std::io::Result<Box<dyn Pipe>> + Send + 'static,
    connect: impl Fn() -> std::io::Result<Box<dyn Pipe>> + Send + 'static,
    trace: &Path,
) {
    let trace = Arc::new(Mutex::new(
        std::fs::File::create(trace).expect("create the 9P trace"),
    ));
    let t0 = Instant::now();
    std::thread::spawn(move || {
        for conn in 0.. {
            let Ok(client) = accept() else { return };
            let server = match connect() {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(trace.lock().unwrap(), "{conn} connect: {e}");
                    continue;
                }
            };
            let (Ok(c2), Ok(s2)) = (client.dup(), server.dup()) else {
                continue;
            };
            for (mut from, mut into, dir) in [(client, s2, "c>s"), (server, c2, "s>c")] {
                let trace = trace.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
                        let _ = writeln!(
                            trace.lock().unwrap_or_else(|e| e.into_inner()),
                            "{:.3} {conn} {dir} {n}: {hex}",
                            t0.elapsed().as_secs_f64()
                        );
                        if into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    // One side hung up: pass it on (the kernel's TCP sees the client's FIN).
                    into.close_write();
                });
            }
        }
    });
}

impl Drop for Linux {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_after_their_dependencies() {
        let kernel = need(images::debian_kernel());
        let mods = modules(&module_tree(&kernel), WANTED);
        let names: Vec<&str> = mods.iter().map(|(n, _)| n.as_str()).collect();
        let at = |n: &str| {
            names
                .iter()
                .position(|m| *m == n)
                .unwrap_or_else(|| panic!("{n} not in {names:?}"))
        };
        assert!(at("9pnet") < at("9pnet_fd"), "{names:?}");
        assert!(at("9pnet") < at("9p"), "{names:?}");
        // The client's NIC driver for trans=tcp.
        at("e1000");
        for (n, ko) in &mods {
            assert_eq!(&ko[..4], b"\x7fELF", "{n} is an uncompressed ELF object");
            for d in depends(ko) {
                assert!(at(&d) < at(n), "{d} before {n}: {names:?}");
            }
        }
    }

    #[test]
    fn depends_reads_modinfo() {
        assert_eq!(
            depends(b"\0license=GPL\0depends=9pnet,netfs\0vermagic=6\0"),
            ["9pnet", "netfs"]
        );
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"nothing here").is_empty());
    }
}
