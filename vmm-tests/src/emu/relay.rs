//! Bochs's COM1, a TCP client that connects once at power-on, relayed to a unix socket
//! that 9P clients may connect to, one at a time and again and again (the harness's
//! machines, and `qemu/bochs` through the `com1-relay` binary).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// Relays Bochs's COM1 stream to clients of `uart`, one at a time. Bytes from the machine
/// while no client is connected are dropped. The handle returned ends when the machine
/// closes COM1.
pub fn relay(com1: TcpStream, uart: UnixListener) -> thread::JoinHandle<()> {
    let client: Arc<Mutex<Option<UnixStream>>> = Arc::new(Mutex::new(None));
    let mut from = com1.try_clone().expect("clone COM1");
    let to_client = client.clone();
    let machine = thread::spawn(move || {
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
    machine
}
