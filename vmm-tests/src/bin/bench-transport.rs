//! 9P over virtio-serial in QEMU beside the raw transport it runs on, in the same run:
//! one virtio port serves 9P, another echoes bytes (kernel command line `echo=`).
//!
//! cargo run --release -p vmm-tests --bin bench-transport [SECONDS] [--bochs]
//!
//! Prints round trips per second and bytes per second for each, and the ratio 9P/raw.
//! The 9P figures also show COM1 for comparison (and COM1 under Bochs with `--bochs`).

use ninep_client::{dm, om, Client};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};

/// Runs `f` repeatedly for `secs`; returns operations per second.
fn rate(secs: f64, mut f: impl FnMut() -> u64) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        n += f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Raw echo: small messages there and back, and a stream of bytes.
fn raw(s: &mut UnixStream, secs: f64) -> (f64, f64) {
    let msg = [0x5au8; 32];
    let mut back = [0u8; 32];
    let rts = rate(secs, || {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
        1
    });
    // Keep 64 KiB in flight: write a chunk, read a chunk.
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut inbuf = vec![0u8; 16 * 1024];
    s.write_all(&chunk).unwrap();
    s.write_all(&chunk).unwrap();
    let bps = rate(secs, || {
        s.write_all(&chunk).unwrap();
        s.read_exact(&mut inbuf).unwrap();
        chunk.len() as u64
    });
    s.read_exact(&mut inbuf).unwrap();
    s.read_exact(&mut inbuf).unwrap();
    (rts, bps)
}

/// 9P: Tstat round trips, and reads and writes of a segment's data in iounit pieces.
fn ninep(c: &Client, name: &str, secs: f64) -> (f64, f64, f64) {
    let fid = c.walk("vmx").expect("walk vmx");
    let rts = rate(secs, || {
        fid.stat().expect("stat");
        1
    });
    const SIZE: u64 = 1 << 20;
    let seg = format!("segment/{name}");
    c.create("segment", name, dm::DIR | 0o777, om::READ)
        .expect("create a segment")
        .clunk()
        .ok();
    c.open(&format!("{seg}/ctl"), om::WRITE)
        .expect("open segment ctl")
        .write_str(&format!("va 0x10000000 {SIZE:#x} sticky"))
        .expect("size the segment");
    let data = c
        .open(&format!("{seg}/data"), om::RDWR)
        .expect("open segment data");
    let io = data.iounit().max(1024).min(c.max_io()) as u64;
    let block = vec![0x3cu8; io as usize];
    let mut off = 0u64;
    let wbps = rate(secs, || {
        let n = data.write_at(off, &block).expect("write data") as u64;
        off = (off + n) % SIZE;
        n
    });
    let mut off = 0u64;
    let rbps = rate(secs, || {
        let n = data.read_at(off, io as u32).expect("read data").len() as u64;
        off = (off + n) % SIZE;
        n
    });
    drop(data);
    c.remove(&seg).ok();
    (rts, wbps, rbps)
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let m = Machine::qemu(Opts {
        cmdline: "owner=eve serve=uart,virtio echo=virtio:9p.1".into(),
        virtio_ports: 2,
        ..Opts::default()
    });
    let mut echo = m.raw(&m.virtio_path(1));
    echo.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let (raw_rts, raw_bps) = raw(&mut echo, secs);

    let msize = 64 * 1024 + 24;
    let v = m.client_msize(&m.virtio_path(0), "eve", "", msize);
    let (v_rts, v_w, v_r) = ninep(&v, "benchv", secs);
    let u = m.client_msize(&m.uart_path(), "eve", "", msize);
    let (u_rts, u_w, u_r) = ninep(&u, "benchu", secs.min(2.0));

    println!("QEMU (TCG) virtio-serial and COM1, {secs} s per figure, 9P msize {msize}");
    println!("{:<34} {:>12} {:>14}", "", "round trips/s", "bytes/s");
    println!(
        "{:<34} {:>12.0} {:>14.0}",
        "virtio raw echo (32 B / 16 KiB)", raw_rts, raw_bps
    );
    println!(
        "{:<34} {:>12.0} {:>14.0}",
        "virtio 9P (Tstat / Twrite)", v_rts, v_w
    );
    println!("{:<34} {:>12} {:>14.0}", "virtio 9P (Tread)", "", v_r);
    println!(
        "{:<34} {:>12.0} {:>14.0}",
        "COM1 9P (Tstat / Twrite)", u_rts, u_w
    );
    println!("{:<34} {:>12} {:>14.0}", "COM1 9P (Tread)", "", u_r);
    println!(
        "9P/raw on virtio: round trips {:.2}, bytes {:.2} (write) {:.2} (read)",
        v_rts / raw_rts,
        v_w / raw_bps,
        v_r / raw_bps
    );
    drop((v, u, echo, m));

    if std::env::args().any(|a| a == "--bochs") {
        let b = Machine::bochs(Opts::default());
        let c = b.client_msize(&b.uart_path(), "eve", "", 8192 + 24);
        let (rts, w, r) = ninep(&c, "benchb", secs);
        let ips = Opts::default().ips;
        println!(
            "Bochs COM1 9P (ips {ips}): {rts:.0} Tstat/s, {w:.0} B/s written, {r:.0} B/s read"
        );
    }
}
