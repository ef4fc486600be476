//! `com1-relay HOST:PORT UNIX_PATH`: serves Bochs's COM1 (a TCP client that connects once,
//! at power-on, to HOST:PORT) to 9P clients on the unix socket UNIX_PATH, one at a time
//! and again and again, until the machine closes COM1. `qemu/bochs` runs it; the harness
//! relays the same way in-process (vmm_tests::emu::relay).

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use vmm_tests::emu::relay::relay;

fn die(msg: &str) -> ! {
    eprintln!("com1-relay: {msg}");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, path] = &args[..] else {
        die("usage: com1-relay HOST:PORT UNIX_PATH");
    };
    let tcp = TcpListener::bind(addr).unwrap_or_else(|e| die(&format!("listen on {addr}: {e}")));
    let _ = std::fs::remove_file(path);
    let uart = UnixListener::bind(path).unwrap_or_else(|e| die(&format!("bind {path}: {e}")));
    let (com1, _) = tcp
        .accept()
        .unwrap_or_else(|e| die(&format!("accept COM1: {e}")));
    // Bochs sends a byte per segment: no Nagle on our side either.
    com1.set_nodelay(true).ok();
    let _ = relay(com1, uart).join();
}
