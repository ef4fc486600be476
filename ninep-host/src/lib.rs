//! Serves a `ninep::Tree` to real clients over unix sockets and TCP, so the engine meets
//! clients nobody here wrote before the kernel exists.
//!
//! One engine thread owns the tree and every session (the engine is single-threaded per
//! tree); a reader thread per connection feeds it bytes and a writer thread per
//! connection sends its replies. After each batch of input the engine retries every
//! session's pending reads, since a request on one connection (a write to a queue) can
//! answer a read blocked on another.
#![forbid(unsafe_code)]

use ninep::memfs::{Memfs, ROOT};
use ninep::{Limits, Session, Tree};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread;

/// What connection threads tell the engine.
enum Event {
    Open(u32, Sender<Vec<u8>>),
    Data(u32, Vec<u8>),
    Closed(u32),
}

/// A server under construction: add listeners, then [`Server::run`].
pub struct Server<T: Tree> {
    tree: T,
    limits: Limits,
    tx: SyncSender<Event>,
    rx: Receiver<Event>,
}

/// A stream a connection runs over.
trait Stream: Read + Write + Send + 'static {
    fn dup(&self) -> io::Result<Self>
    where
        Self: Sized;
}

impl Stream for TcpStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

impl Stream for UnixStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Starts the reader and writer threads of one connection.
fn connection<S: Stream>(s: S, events: SyncSender<Event>) -> io::Result<()> {
    let id = next_id();
    let mut w = s.dup()?;
    let mut r = s;
    let (otx, orx) = channel::<Vec<u8>>();
    if events.send(Event::Open(id, otx)).is_err() {
        return Ok(());
    }
    thread::spawn(move || {
        // Ends when the engine drops the sender (connection closed) or the peer is gone.
        while let Ok(bytes) = orx.recv() {
            if w.write_all(&bytes).is_err() {
                break;
            }
        }
    });
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 17];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if events.send(Event::Data(id, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = events.send(Event::Closed(id));
    });
    Ok(())
}

impl<T: Tree> Server<T> {
    pub fn new(tree: T, limits: Limits) -> Self {
        // Bounded, so a fast sender waits for the engine instead of queueing without end.
        let (tx, rx) = sync_channel(64);
        Server {
            tree,
            limits,
            tx,
            rx,
        }
    }

    /// Accepts connections on a unix socket at `path` (a stale socket file is replaced).
    pub fn listen_unix(&self, path: &Path) -> io::Result<()> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let l = UnixListener::bind(path)?;
        let tx = self.tx.clone();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = connection(s, tx.clone());
            }
        });
        Ok(())
    }

    /// Accepts TCP connections on `addr`; returns the bound address (port 0 picks one).
    pub fn listen_tcp(&self, addr: &str) -> io::Result<std::net::SocketAddr> {
        let l = TcpListener::bind(addr)?;
        let local = l.local_addr()?;
        let tx = self.tx.clone();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = s.set_nodelay(true);
                let _ = connection(s, tx.clone());
            }
        });
        Ok(local)
    }

    /// Serves forever (until every listener and connection is gone).
    pub fn run(self) {
        let Server {
            mut tree,
            limits,
            tx,
            rx,
        } = self;
        drop(tx);
        let mut conns: BTreeMap<u32, (Session<T>, Sender<Vec<u8>>)> = BTreeMap::new();
        while let Ok(ev) = rx.recv() {
            match ev {
                Event::Open(id, out) => {
                    conns.insert(id, (Session::new(id, limits), out));
                }
                Event::Closed(id) => {
                    if let Some((mut s, _)) = conns.remove(&id) {
                        s.reset(&mut tree);
                    }
                }
                Event::Data(id, bytes) => {
                    let Some((s, out)) = conns.get_mut(&id) else {
                        continue;
                    };
                    let mut off = 0;
                    loop {
                        off += s.input(&bytes[off..]);
                        s.process(&mut tree);
                        send_output(s, out);
                        if off == bytes.len() {
                            break;
                        }
                    }
                }
            }
            // What one connection did may answer reads pending on the others.
            for (s, out) in conns.values_mut() {
                if s.has_pending() {
                    s.poll(&mut tree);
                    send_output(s, out);
                }
            }
        }
    }
}

fn send_output<T: Tree>(s: &mut Session<T>, out: &Sender<Vec<u8>>) {
    let o = s.output();
    if !o.is_empty() {
        // A send fails only when the writer thread has ended; the reader will report
        // the close.
        let _ = out.send(o.to_vec());
        let n = o.len();
        s.consume_output(n);
    }
}

/// The test tree served by the `ninep-host` binary, owned by `owner`:
///
/// - `hello` (0644, "hello, world\n"), `secret` (0600), `big` (0666, 256 KiB pattern)
/// - `dir/` (0777) holding `a` ("alpha\n") and `b` ("beta\n")
/// - `wait` (0666): a queue; each read waits for and returns one written record
/// - `ro/` (0555) holding `motd` (0444): nothing here may be changed by others
///
/// The root is 0777, so clients may create and remove there.
pub fn test_tree(owner: &str) -> Memfs {
    let mut fs = Memfs::new(owner);
    let files: [(u64, &str, u32, &[u8]); 3] = [
        (ROOT, "hello", 0o644, b"hello, world\n"),
        (ROOT, "secret", 0o600, b"owner only\n"),
        (ROOT, "big", 0o666, &big_pattern()),
    ];
    for (dir, name, mode, data) in files {
        let _ = fs.add_file(dir, name, mode, owner, data);
    }
    if let Ok(d) = fs.mkdir(ROOT, "dir", 0o777, owner) {
        let _ = fs.add_file(d, "a", 0o644, owner, b"alpha\n");
        let _ = fs.add_file(d, "b", 0o644, owner, b"beta\n");
    }
    let _ = fs.add_queue(ROOT, "wait", 0o666, owner);
    if let Ok(d) = fs.mkdir(ROOT, "ro", 0o555, owner) {
        let _ = fs.add_file(d, "motd", 0o444, owner, b"read only\n");
    }
    fs
}

/// Byte `i` of the `big` file.
pub fn big_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) % 251) as u8
}

pub const BIG_LEN: usize = 256 * 1024;

fn big_pattern() -> Vec<u8> {
    (0..BIG_LEN).map(big_byte).collect()
}
