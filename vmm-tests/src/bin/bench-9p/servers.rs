//! The servers bench-9p measures: ours in a child process (`--serve`), the lib9p peer
//! built against plan9port and started, each one's CPU time, and how to reach them.

use crate::{die, ok};
use ninep::Limits;
use ninep_host::{test_tree, Server};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The servers this run started, ended on every way out.
pub(crate) static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

pub(crate) fn stop_children() {
    let mut cs = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    for c in cs.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    cs.clear();
}

/// A server measured: its dial string, and its process when this run started it.
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) pid: Option<u32>,
}

/// CPU seconds process `pid` used, its reaped children's included (the lib9p peer
/// serves each connection in a child it reaps), from /proc's utime, stime, cutime and
/// cstime (in USER_HZ, 100 on Linux).
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is the 3rd field, utime the 14th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    Some(f.iter().sum::<u64>() as f64 / 100.0)
}

/// A socket both ways.
pub(crate) trait Stream: std::io::Read + std::io::Write {}
impl<S: std::io::Read + std::io::Write> Stream for S {}

/// Connects to `unix!PATH` or `tcp!HOST!PORT` (with TCP_NODELAY, as ninep-client and
/// ninep-host set it).
pub(crate) fn connect(addr: &str) -> std::io::Result<Box<dyn Stream>> {
    if let Some(p) = addr.strip_prefix("unix!") {
        return Ok(Box::new(std::os::unix::net::UnixStream::connect(p)?));
    }
    let hp = addr
        .strip_prefix("tcp!")
        .unwrap_or(addr)
        .replacen('!', ":", 1);
    let s = std::net::TcpStream::connect(hp)?;
    s.set_nodelay(true)?;
    Ok(Box::new(s))
}

/// Serves the test tree at `unix!PATH` or `tcp!HOST!PORT` until killed (the child
/// `--serve`).
pub(crate) fn serve(addr: &str) -> ! {
    let server = Server::new(test_tree("glenda"), Limits::default());
    let r = match addr.strip_prefix("unix!") {
        Some(p) => server.listen_unix(Path::new(p)),
        None => {
            let hp = addr
                .strip_prefix("tcp!")
                .unwrap_or(addr)
                .replacen('!', ":", 1);
            server.listen_tcp(&hp).map(|_| ())
        }
    };
    if let Err(e) = r {
        die(&format!("listen {addr}: {e}"));
    }
    server.run();
    std::process::exit(0)
}

/// Where a server this run starts listens: a unix socket in `dir`, or a free TCP port
/// on 127.0.0.1.
pub(crate) fn listen_addr(tcp: bool, dir: &Path, name: &str) -> String {
    if !tcp {
        return format!("unix!{}", dir.join(format!("{name}.sock")).display());
    }
    let l = ok(std::net::TcpListener::bind("127.0.0.1:0"));
    format!("tcp!127.0.0.1!{}", ok(l.local_addr()).port())
}

/// Starts `cmd` as a server and waits for it to answer at `addr`; returns its pid.
pub(crate) fn start(mut cmd: Command, addr: &str, what: &str) -> u32 {
    let child = cmd
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(&format!("start {what}: {e}")));
    let pid = child.id();
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child);
    let t = Instant::now();
    while connect(addr).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            die(&format!("{what} did not listen on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pid
}

/// Builds the lib9p peer against the plan9port tree `plan9` into `dir`.
pub(crate) fn build_peer(plan9: &Path, dir: &Path) -> PathBuf {
    let src = dir.join("lib9p-peer.c");
    let (obj, exe) = (dir.join("lib9p-peer.o"), dir.join("lib9p-peer"));
    ok(std::fs::write(&src, include_str!("lib9p-peer.c")));
    let path = format!(
        "{}:{}",
        plan9.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let steps: [(&str, Vec<&std::ffi::OsStr>); 2] = [
        ("9c", vec!["-o".as_ref(), obj.as_os_str(), src.as_os_str()]),
        (
            "9l",
            vec![
                "-o".as_ref(),
                exe.as_os_str(),
                obj.as_os_str(),
                "-l9p".as_ref(),
                "-lthread".as_ref(),
                "-l9".as_ref(),
            ],
        ),
    ];
    for (tool, args) in steps {
        let st = Command::new(plan9.join("bin").join(tool))
            .args(args)
            .env("PLAN9", plan9)
            .env("PATH", &path)
            .status();
        if !st.is_ok_and(|s| s.success()) {
            die(&format!(
                "{tool} failed building the lib9p peer against {} (it needs lib9p, lib9 and libthread built there)",
                plan9.display()
            ));
        }
    }
    exe
}
