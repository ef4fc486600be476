//! What the tool-against-devvmx tests share: devvmx's Namespace over TestHw served by the
//! ninep engine on a unix socket pair, the tool run against it, and scripted exits.

#![allow(dead_code)]

use devvmx::testhw::{Exit, TestHw};
use devvmx::{Config, Namespace};
use ninep::{Limits, Session};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmm_tests::fixtures::{run_options, Capture as W};
use vmx::layout::Layout;
use vmx::loader;
use vmx::session;

pub type Ns = Arc<Mutex<Namespace<TestHw>>>;

/// One session served on this thread: feed requests, enter running guests, answer
/// pending reads (wait), until the client hangs up.
pub fn serve(ns: Ns, mut s: UnixStream) {
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut sess: Session<Namespace<TestHw>> = Session::new(1, Limits::default());
    let mut buf = vec![0u8; 1 << 17];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => 0,
            Err(_) => break,
        };
        let mut ns = ns.lock().unwrap();
        let mut off = 0;
        loop {
            off += sess.input(&buf[off..n]);
            sess.process(&mut ns);
            if off >= n {
                break;
            }
        }
        ns.run_guests();
        sess.poll(&mut ns);
        let out = sess.output().to_vec();
        sess.consume_output(out.len());
        drop(ns);
        if !out.is_empty() && w.write_all(&out).is_err() {
            break;
        }
    }
    sess.reset(&mut ns.lock().unwrap());
}

/// A namespace over `hw` served on a thread: the server's handle, a client, and the
/// client's end of the link (to cut it as a dying process would).
pub fn connect(
    hw: TestHw,
) -> (
    Ns,
    std::thread::JoinHandle<()>,
    ninep_client::Client,
    UnixStream,
) {
    connect_msize(hw, ninep_client::DEFAULT_MSIZE)
}

/// As [`connect`], the client dialing at `msize`.
pub fn connect_msize(
    hw: TestHw,
    msize: u32,
) -> (
    Ns,
    std::thread::JoinHandle<()>,
    ninep_client::Client,
    UnixStream,
) {
    let ns: Ns = Arc::new(Mutex::new(Namespace::new(
        hw,
        Config {
            owner: "eve".into(),
            version: "test",
        },
    )));
    let (a, b) = UnixStream::pair().unwrap();
    let server = std::thread::spawn({
        let ns = ns.clone();
        move || serve(ns, b)
    });
    let link = a.try_clone().unwrap();
    let client = ninep_client::Client::over_msize(a, "eve", "", msize).unwrap();
    (ns, server, client, link)
}

/// A one-byte port access.
pub fn io(port: u16, input: bool, ax: u64) -> Exit {
    io_of(1, port, input, ax)
}

/// A port access of `bytes` bytes (1, 2 or 4; the qualification's size field is one less).
pub fn io_of(bytes: u64, port: u16, input: bool, ax: u64) -> Exit {
    let direction = if input { 8 } else { 0 };
    Exit {
        qual: u64::from(port) << 16 | direction | (bytes - 1),
        ilen: 1,
        ax: Some(ax),
        ..Exit::new(30)
    }
}

/// The scripted guest: "OK" on COM1, cpuid, an `in` from COM1's status register, and a
/// hlt with interrupts off.
pub fn script() -> Vec<Exit> {
    vec![
        io(0x3f8, false, u64::from(b'O')),
        io(0x3f8, false, u64::from(b'K')),
        Exit {
            ilen: 2,
            ax: Some(0),
            ..Exit::new(10)
        }, // cpuid leaf 0
        io(0x3fd, true, 0xabcd),
        hlt(), // with interrupts off
    ]
}

/// Runs the script through the tool against devvmx served on a socket pair.
pub fn run_script(kernel_devices: bool) -> (Ns, session::Report, Vec<u8>, String) {
    run_with(kernel_devices, script(), Default::default())
}

/// Runs `exits` with `devices` through the tool against devvmx served on a socket pair.
pub fn run_with(
    kernel_devices: bool,
    exits: Vec<Exit>,
    devices: session::Devices<'static>,
) -> (Ns, session::Report, Vec<u8>, String) {
    let mut hw = TestHw::new(4096);
    hw.exits.extend(exits);
    let (ns, server, client, _) = connect(hw);
    // A switch, as the kernel always hands one over (`-n switch` cards join it).
    ns.lock()
        .unwrap()
        .set_switch(devvmx::HostSwitch::unbridged(|| 0));
    let layout = Layout::new(4 << 20).unwrap();
    let code = vec![0x90u8; 6000];
    let img = loader::load_raw(&code, 0x1000, &layout).unwrap();
    let (out, log) = (W::default(), W::default());
    let opts = run_options("vm.test", out.clone(), log.clone(), kernel_devices, devices);
    let report = session::run(client, &layout, &img, opts).unwrap();
    server.join().unwrap();
    let log = log.text();
    let out = out.0.lock().unwrap().clone();
    (ns, report, out, log)
}

/// A `hlt` (exit reason 12), the scripts' last exit.
pub fn hlt() -> Exit {
    Exit {
        ilen: 1,
        ..Exit::new(12)
    }
}

/// A 32-bit port access.
pub fn io32(port: u16, input: bool, ax: u64) -> Exit {
    io_of(4, port, input, ax)
}

/// A 16-bit port write.
pub fn out16(port: u16, v: u64) -> Exit {
    io_of(2, port, false, v)
}
