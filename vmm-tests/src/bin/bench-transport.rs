//! 9P beside the raw transport it runs on, in the same run: over virtio-serial and TCP
//! (virtio-net) under QEMU, and over COM1 and TCP (e1000) under Bochs with `--bochs`. One
//! virtio port and one TCP port (kernel command line `echo=`, `echoport=`) echo bytes.
//!
//! cargo run --release -p vmm-tests --bin bench-transport [SECONDS] [--bochs | --bochs-only]
//!
//! Prints round trips per second and bytes per second for each, the ratio 9P/raw, and for
//! each TCP link the kernel's MB/s: 9P's bulk writes and reads beside the raw echo's.
//! With `--bochs-only` the QEMU half is skipped. Speed goals are printed, never asserted.

use ninep_client::{dm, om, Client};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use vmm_tests::bench;
use vmm_tests::emu::{Machine, Nic, Opts};
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
fn raw(s: &mut (impl Read + Write), secs: f64) -> (f64, f64) {
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

const SECRET: &str = "bench";
const MSIZE: u32 = 64 * 1024 + 24;

fn row(what: &str, rts: f64, bps: f64) {
    println!("{what:<38} {rts:>12.0} {bps:>14.0}");
}

/// A link's rows: its raw echo if measured, then 9P's Tstat/Twrite and Tread.
fn link_rows(link: &str, raw: Option<(f64, f64)>, (rts, w, r): (f64, f64, f64)) {
    if let Some((rts, bps)) = raw {
        row(&format!("{link} raw echo (32 B / 16 KiB)"), rts, bps);
    }
    row(&format!("{link} 9P (Tstat / Twrite)"), rts, w);
    row(&format!("{link} 9P (Tread)"), f64::NAN, r);
}

/// A TCP link's bulk figures in MB/s (10^6 bytes): the kernel's raw echo (16 KiB chunks,
/// 64 KiB in flight) beside 9P's Twrite and Tread streams on the same link.
fn tcp_mbs(what: &str, raw_bps: f64, w: f64, r: f64) {
    let mb = |b: f64| b / 1e6;
    println!(
        "{what}: raw echo {:.2} MB/s; 9P {:.2} MB/s written, {:.2} MB/s read ({:.2}x and {:.2}x the echo)",
        mb(raw_bps),
        mb(w),
        mb(r),
        w / raw_bps,
        r / raw_bps
    );
}

fn header(title: &str) {
    println!("{title}");
    println!("{:<38} {:>12} {:>14}", "", "round trips/s", "bytes/s");
}

fn tcp_client(m: &Machine, msize: u32) -> Client {
    let s = m.tcp_raw();
    s.set_read_timeout(None).ok();
    let c = Client::over_msize(s, "eve", &format!("!{SECRET}"), msize).expect("attach over TCP");
    c.set_timeout(Some(Duration::from_secs(60)));
    c
}

fn main() {
    bench::require_programs("bench-transport", &["qemu-system-x86_64", "grub-mkrescue"]);
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let only = std::env::args().any(|a| a == "--bochs-only");
    if !only {
        qemu(secs);
    }
    if only || std::env::args().any(|a| a == "--bochs") {
        bochs(secs);
    }
}

/// QEMU: virtio-serial, TCP on virtio-net and COM1.
fn qemu(secs: f64) {
    let m = Machine::qemu(Opts {
        cmdline: format!(
            "owner=eve secret={SECRET} serve=uart,virtio,net echo=virtio:9p.1 echoport=7"
        ),
        virtio_ports: 2,
        nic: Some(Nic::VirtioNet),
        tcp_echo: true,
        ..Opts::default()
    });
    let mut echo = m.raw(&m.virtio_path(1));
    echo.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let (raw_rts, raw_bps) = raw(&mut echo, secs);
    let mut techo = std::net::TcpStream::connect(("127.0.0.1", m.tcp_echo_port())).unwrap();
    techo.set_nodelay(true).ok();
    techo.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let (traw_rts, traw_bps) = raw(&mut techo, secs);

    let v = m.client_msize(&m.virtio_path(0), "eve", "", MSIZE);
    let (v_rts, v_w, v_r) = ninep(&v, "benchv", secs);
    let t = tcp_client(&m, MSIZE);
    let (t_rts, t_w, t_r) = ninep(&t, "bencht", secs);
    let u = m.client_msize(&m.uart_path(), "eve", "", MSIZE);
    let (u_rts, u_w, u_r) = ninep(&u, "benchu", secs.min(2.0));

    header(&format!(
        "QEMU (TCG): virtio-serial, TCP on virtio-net, COM1; {secs} s per figure, 9P msize {MSIZE}"
    ));
    link_rows("virtio", Some((raw_rts, raw_bps)), (v_rts, v_w, v_r));
    link_rows("TCP", Some((traw_rts, traw_bps)), (t_rts, t_w, t_r));
    link_rows("COM1", None, (u_rts, u_w, u_r));
    println!(
        "9P/raw: virtio round trips {:.2}, bytes {:.2} (write) {:.2} (read); TCP round trips {:.2}, bytes {:.2} (write) {:.2} (read)",
        v_rts / raw_rts,
        v_w / raw_bps,
        v_r / raw_bps,
        t_rts / traw_rts,
        t_w / traw_bps,
        t_r / traw_bps
    );
    println!(
        "TCP/virtio 9P: round trips {:.2}, bytes {:.2} (read)",
        t_rts / v_rts,
        t_r / v_r
    );
    tcp_mbs("QEMU TCP (virtio-net)", traw_bps, t_w, t_r);
}

/// Bochs: TCP on e1000 and COM1.
fn bochs(secs: f64) {
    bench::require_programs("bench-transport", &["bochs"]);
    let b = Machine::bochs(Opts {
        cmdline: format!("owner=eve secret={SECRET} serve=uart,net echoport=7"),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        tcp_echo: true,
        ..Opts::default()
    });
    let msize = 8192 + 24;
    let mut techo = std::net::TcpStream::connect(("127.0.0.1", b.tcp_echo_port())).unwrap();
    techo.set_nodelay(true).ok();
    techo.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let (traw_rts, traw_bps) = raw(&mut techo, secs);
    let t = tcp_client(&b, MSIZE);
    let (t_rts, t_w, t_r) = ninep(&t, "benchbt", secs);
    let c = b.client_msize(&b.uart_path(), "eve", "", msize);
    let (u_rts, u_w, u_r) = ninep(&c, "benchb", secs);
    let ips = Opts::default().ips;
    header(&format!(
        "Bochs (ips {ips}): COM1 (9P msize {msize}) and TCP on e1000 (msize {MSIZE})"
    ));
    link_rows("TCP", Some((traw_rts, traw_bps)), (t_rts, t_w, t_r));
    link_rows("COM1", None, (u_rts, u_w, u_r));
    println!(
        "goal: TCP >= 3x COM1 round trips/s and >= 20x its bytes/s; measured {:.1}x round trips, {:.1}x bytes (read), {:.1}x (write)",
        t_rts / u_rts,
        t_r / u_r,
        t_w / u_w
    );
    tcp_mbs("Bochs TCP (e1000)", traw_bps, t_w, t_r);
}
