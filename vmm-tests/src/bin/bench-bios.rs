//! Benchmark (prints figures, asserts nothing): a GRUB ISO (`fixtures::bootiso`: Debian's
//! kernel, a busybox initramfs) booted by SeaBIOS to a shell prompt, two ways:
//!
//! - `vmx`: on the hypervisor under Bochs, `vmx --bios --stats -d ISO` (Debian's
//!   SeaBIOS, the PC devices in the hypervisor, the disk on the tool's virtio-blk);
//! - `qemu`: QEMU TCG booting the same ISO on its own virtio-blk with its own SeaBIOS.
//!
//! For each, seconds from `go` (for vmx: when the firmware's upload ends; for QEMU: its
//! start) to the firmware's handover ("Booting from Hard Disk", where SeaBIOS prints it
//! on the serial line), to GRUB's menu and to the shell's prompt, then the answer to
//! `echo $((6*9))`; for vmx, the 9P round trips of each phase (go to the handover, the
//! handover to GRUB's menu, the menu to the shell, the shell to its answer: the tool's
//! requests, counted by a relay between the tool and the machine that reads the 9P frames'
//! sizes, as the console shows each phase's end) and the tool's round trips by exit reason
//! (`--stats`) after the guest powers off.
//!
//! `cargo run --release -p vmm-tests --bin bench-bios [-- vmx qemu]` (default: both).
//! Needs Bochs, grub-mkrescue, QEMU, Debian's seabios and the Debian kernel and busybox
//! that `scripts/setup` makes. `BENCH_SECS` bounds each run (default 3600).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm_tests::bench;
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::fixtures::{bootiso, images};

const NAME: &str = "bench-bios";
/// What the serial line shows at each phase's end.
const HANDOVER: &str = "Booting from Hard Disk";

/// The phases, in order: their ends as the table names them.
const PHASES: [&str; 4] = ["handover", "grub menu", "shell", "54"];

/// One run's figures: seconds from go to each phase's end, and the 9P requests the tool
/// had sent by then (None: not seen; no counts for QEMU).
#[derive(Default)]
struct Row {
    name: &'static str,
    secs: [Option<f64>; 4],
    trips: [Option<u64>; 4],
    /// Requests before go (the set-up and the firmware's upload).
    trips_at_go: Option<u64>,
    note: String,
}

/// A relay on a unix socket of its own between the tool and the machine's 9P socket `to`
/// that counts the tool's requests (9P frames: a 4-byte little-endian size, then the
/// message). Returns the socket's path and the count.
fn counting_relay(to: PathBuf, dir: &Path) -> (PathBuf, Arc<AtomicU64>) {
    let path = dir.join("9p-count.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).expect("bind the counting relay");
    let n = Arc::new(AtomicU64::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { return };
            let Ok(server) = UnixStream::connect(&to) else {
                return;
            };
            let (mut down, mut up) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut down, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Both);
            });
            let count = count.clone();
            std::thread::spawn(move || {
                let (mut from, mut to) = (BufReader::new(client), server);
                let mut frame = Vec::new();
                loop {
                    let mut size = [0u8; 4];
                    if from.read_exact(&mut size).is_err() {
                        break;
                    }
                    let len = (u32::from_le_bytes(size) as usize).saturating_sub(4);
                    frame.clear();
                    frame.extend_from_slice(&size);
                    frame.resize(4 + len, 0);
                    if from.read_exact(&mut frame[4..]).is_err() || to.write_all(&frame).is_err() {
                        break;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (path, n)
}

/// A child's serial output as it arrives.
struct Console {
    rx: Receiver<Vec<u8>>,
    text: String,
}

impl Console {
    fn new(mut r: impl Read + Send + 'static) -> Console {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = r.read(&mut b) {
                if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Console {
            rx,
            text: String::new(),
        }
    }

    /// Seconds since `t0` when `what` appears (searching from `from`, which moves past
    /// it), or None at `deadline` or the output's end.
    fn wait(
        &mut self,
        what: &str,
        from: &mut usize,
        t0: Instant,
        deadline: Instant,
    ) -> Option<f64> {
        loop {
            if let Some(i) = self.text[*from..].find(what) {
                *from += i + what.len();
                return Some(t0.elapsed().as_secs_f64());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(b) => self.text.push_str(&String::from_utf8_lossy(&b)),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(_) => {}
            }
        }
    }
}

fn budget() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3600),
    )
}

/// The phases on `con`, `input` typed the question at the prompt; `trips` (when given)
/// read at each phase's end.
fn phases(
    row: &mut Row,
    con: &mut Console,
    input: &mut dyn Write,
    t0: Instant,
    trips: Option<&AtomicU64>,
) {
    let deadline = Instant::now() + budget();
    let mut from = 0;
    let ends = [HANDOVER, bootiso::MENU_ENTRY, bootiso::SHELL_BANNER, "54"];
    for (i, what) in ends.iter().enumerate() {
        if i == 3 {
            if row.secs[2].is_none() {
                break;
            }
            let _ = input.write_all(b"echo $((6*9))\n");
            let _ = input.flush();
        }
        row.secs[i] = con.wait(what, &mut from, t0, deadline);
        row.trips[i] = row.secs[i].and(trips.map(|t| t.load(Ordering::Relaxed)));
        if i == 0 && row.secs[0].is_none() {
            from = 0;
        }
    }
    if row.secs[2].is_some() {
        let _ = input.write_all(b"poweroff -f\n");
        let _ = input.flush();
    }
}

fn vmx(iso: &Path, dir: &Path) -> Row {
    let mut row = Row {
        name: "vmx",
        ..Row::default()
    };
    let m = Machine::vtx(Opts {
        virtio_ports: 0,
        ..Opts::default()
    });
    let (sock, trips) = counting_relay(m.uart_path(), dir);
    let mut child = Command::new(vmm_tests::fixtures::tool::vmx())
        .arg("-a")
        .arg(Machine::dial_string(&sock))
        .args(["--bios", "--stats", "-M", "128M", "-d"])
        .arg(iso)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmx");
    let mut con = Console::new(child.stdout.take().unwrap());
    let mut input = child.stdin.take().unwrap();
    // The tool's log: the upload's last line marks `go`; the rest is kept for --stats.
    let (tx, log) = channel::<(Instant, String)>();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), l)).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let t0 = loop {
        match log.recv_timeout(budget()) {
            Ok((t, l)) => {
                let go = l.starts_with("vmx: loading") && l.contains("(100%)");
                lines.push(l);
                if go {
                    row.trips_at_go = Some(trips.load(Ordering::Relaxed));
                    break t;
                }
            }
            Err(_) => {
                row.note = format!("no upload: {}", lines.join(" / "));
                let _ = child.kill();
                let _ = child.wait();
                return row;
            }
        }
    };
    phases(&mut row, &mut con, &mut input, t0, Some(&trips));
    drop(input);
    match wait_child(&mut child, Duration::from_secs(300)) {
        true => {}
        false => row.note = "the guest did not power off; killed".into(),
    }
    while let Ok((_, l)) = log.recv_timeout(Duration::from_secs(2)) {
        lines.push(l);
    }
    if row.secs[2].is_none() {
        row.note = format!("{} console tail: {:?}", row.note, tail(&con.text));
    }
    let stats: Vec<&String> = lines
        .iter()
        .skip_while(|l| !l.contains("round trips"))
        .collect();
    println!("vmx --stats:");
    for l in stats {
        println!("  {l}");
    }
    row
}

fn qemu(iso: &Path) -> Row {
    let mut row = Row {
        name: "qemu",
        ..Row::default()
    };
    let t0 = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc,accel=tcg",
            "-m",
            "128M",
            "-nographic",
            "-vga",
            "none",
        ])
        .args([
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-drive",
        ])
        .arg(format!(
            "file={},if=virtio,format=raw,snapshot=on",
            iso.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run qemu-system-x86_64");
    let mut con = Console::new(child.stdout.take().unwrap());
    let mut input = child.stdin.take().unwrap();
    phases(&mut row, &mut con, &mut input, t0, None);
    if !wait_child(&mut child, Duration::from_secs(30)) {
        row.note = "killed after the run".into();
    }
    if row.secs[2].is_none() {
        row.note = format!("{} console tail: {:?}", row.note, tail(&con.text));
    }
    row
}

fn tail(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    c[c.len().saturating_sub(300)..].iter().collect()
}

/// Waits up to `t` for the child to end; kills it after. True when it ended itself.
fn wait_child(c: &mut Child, t: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < t {
        if let Ok(Some(_)) = c.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = c.kill();
    let _ = c.wait();
    false
}

fn main() {
    bench::require_programs(NAME, &["bochs", "grub-mkrescue", "qemu-system-x86_64"]);
    bench::require(NAME, images::debian_kernel());
    bench::require(NAME, images::busybox());
    if !std::path::Path::new(vmx::firmware::DEFAULT_BIOS).exists() {
        eprintln!(
            "{NAME}: {} missing: run scripts/setup",
            vmx::firmware::DEFAULT_BIOS
        );
        std::process::exit(2);
    }
    let which: Vec<String> = std::env::args().skip(1).collect();
    let want = |n: &str| which.is_empty() || which.iter().any(|w| w == n);
    let dir = vmm_tests::fixtures::scratch("bench-bios");
    let iso = bootiso::grub_iso(&dir);
    println!(
        "{NAME}: {} ({} MiB), load average {}",
        iso.display(),
        std::fs::metadata(&iso).map_or(0, |m| m.len() >> 20),
        bench::load_average()
    );
    let mut rows = Vec::new();
    if want("vmx") {
        rows.push(vmx(&iso, &dir));
    }
    if want("qemu") {
        rows.push(qemu(&iso));
    }
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>10}  (s from go)",
        "run", PHASES[0], PHASES[1], PHASES[2], PHASES[3]
    );
    for r in &rows {
        println!(
            "{:<6} {:>10} {:>10} {:>10} {:>10}  {}",
            r.name,
            s(r.secs[0]),
            s(r.secs[1]),
            s(r.secs[2]),
            s(r.secs[3]),
            r.note
        );
    }
    // Each phase's 9P requests (one reply each: round trips), from the previous phase's
    // end (go for the first).
    for r in rows.iter().filter(|r| r.trips_at_go.is_some()) {
        let mut prev = r.trips_at_go;
        let per: Vec<String> = r
            .trips
            .iter()
            .map(|t| {
                let d = t.zip(prev).map(|(t, p)| t - p);
                prev = t.or(prev);
                d.map_or("-".to_string(), |d| d.to_string())
            })
            .collect();
        println!(
            "{:<6} {:>10} {:>10} {:>10} {:>10}  (9P round trips in each phase; {} before go)",
            r.name,
            per[0],
            per[1],
            per[2],
            per[3],
            r.trips_at_go.unwrap_or(0)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
