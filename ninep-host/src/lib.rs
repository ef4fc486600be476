//! Serves a `ninep::Tree` to real clients over unix sockets and TCP, so the engine meets
//! clients nobody here wrote before the kernel exists.
//!
//! The tree and every session live behind one lock (the engine is single-threaded per
//! tree). Each connection's thread reads bytes, and under the lock feeds its session,
//! answers what it can, and retries every session's pending reads, since a request on
//! one connection (a write to a queue) can answer a read blocked on another. Replies are
//! queued per connection under the lock and written outside it, in order, so a client
//! that does not read its replies stalls only the threads that write to it.
//!
//! A connection's bytes are received straight into its session's input buffer, lent
//! outside the lock, and its replies handed over as the session's output buffer, so
//! neither is copied on the way. Before it sleeps in a read, a connection's thread polls
//! its socket briefly ([`POLL`]): the next request of a client's stream is taken without
//! a sleep and a wake-up.
//!
//! A socket has a hang-up, so each connection is a [`Kind::Stream`] link, as the
//! kernel's TCP is: a frame that can never be valid (a size below the header or above
//! msize, an R-message before a session) ends the connection, instead of the line's
//! silent skip to the next Tversion that would leave the client waiting forever.
#![forbid(unsafe_code)]

use ninep::link::{Conn as Link, Kind};
use ninep::memfs::{Memfs, ROOT};
use ninep::{Limits, Tree};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// A connection's sending side: replies queued in order, and the stream they go to.
struct Outbox {
    queue: Mutex<VecDeque<Vec<u8>>>,
    /// Held while writing, so queued replies leave in the order they were queued.
    stream: Mutex<Box<dyn Write + Send>>,
    /// A sent chunk's buffer, handed back to the session to encode the next replies in
    /// (the session's output moves here and back without a copy).
    spare: Mutex<Vec<u8>>,
}

impl Outbox {
    /// Writes everything queued. Whoever holds `stream` drains the queue, so a chunk
    /// queued by another thread meanwhile is sent by one of us, never out of order.
    fn drain(&self) {
        let mut w = lock(&self.stream);
        loop {
            let chunk = lock(&self.queue).pop_front();
            let Some(chunk) = chunk else { break };
            if write_all_waiting(&mut *w, &chunk).is_err() {
                // The reader sees the close and ends the session.
                lock(&self.queue).clear();
                break;
            }
            *lock(&self.spare) = chunk;
        }
    }
}

/// Writes all of `b`. The socket is non-blocking while its reader polls ([`receive`]),
/// so a full socket (a client not reading) answers WouldBlock: wait and try again, from
/// 50 us up to 10 ms apart, as a blocking write would have waited.
fn write_all_waiting(w: &mut dyn Write, mut b: &[u8]) -> io::Result<()> {
    let mut wait = Duration::from_micros(50);
    while !b.is_empty() {
        match w.write(b) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                b = &b[n..];
                wait = Duration::from_micros(50);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(10));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How long a connection's thread polls for the next request before it sleeps in a
/// blocking read. A client sending a stream of requests sends the next within tens of
/// microseconds of a reply, and a sleep and wake-up costs more than answering it (on a
/// loaded virtual machine, several times more): polling briefly takes it without one, as
/// ninep-client polls for its replies and the kernel's loop polls its links.
const POLL: Duration = Duration::from_micros(50);

/// Receives into `room`: polls the (non-blocking) socket for [`POLL`], yielding the CPU
/// between tries, then sleeps in a blocking read. `None`: the connection failed.
fn receive<S: Stream>(r: &mut S, room: &mut [u8]) -> Option<usize> {
    let start = Instant::now();
    loop {
        match r.read(room) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() < POLL {
                    thread::yield_now();
                    continue;
                }
                r.set_polling(false);
                let got = loop {
                    match r.read(room) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        got => break got.ok(),
                    }
                };
                r.set_polling(true);
                return got;
            }
            Err(_) => return None,
        }
    }
}

struct Conn<T: Tree> {
    link: Link<T>,
    out: Arc<Outbox>,
}

struct State<T: Tree> {
    tree: T,
    conns: BTreeMap<u32, Conn<T>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here leaves shared data half-updated across a panic; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves a tree: add listeners, then [`Server::run`] (or just keep the process alive).
pub struct Server<T: Tree> {
    state: Arc<Mutex<State<T>>>,
    limits: Limits,
}

/// A stream a connection runs over.
trait Stream: Read + Write + Send + 'static {
    fn dup(&self) -> io::Result<Self>
    where
        Self: Sized;
    /// Hangs up: the peer reads end of file.
    fn hang_up(&self);
    /// Non-blocking (`true`) while the reader polls, blocking while it sleeps; the
    /// writer shares the socket and takes either ([`write_all_waiting`]).
    fn set_polling(&self, on: bool);
}

impl Stream for TcpStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn hang_up(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn set_polling(&self, on: bool) {
        let _ = self.set_nonblocking(on);
    }
}

impl Stream for UnixStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn hang_up(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn set_polling(&self, on: bool) {
        let _ = self.set_nonblocking(on);
    }
}

fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Queues a session's replies; returns the outbox to drain if there were any.
fn take_output<T: Tree>(c: &mut Conn<T>) -> Option<Arc<Outbox>> {
    let session = c.link.session();
    if session.output().is_empty() {
        return None;
    }
    let spare = core::mem::take(&mut *lock(&c.out.spare));
    let chunk = session.take_output(spare);
    lock(&c.out.queue).push_back(chunk);
    Some(c.out.clone())
}

impl<T> Server<T>
where
    T: Tree + Send + 'static,
    T::Node: Send,
{
    pub fn new(tree: T, limits: Limits) -> Self {
        Server {
            state: Arc::new(Mutex::new(State {
                tree,
                conns: BTreeMap::new(),
            })),
            limits,
        }
    }

    /// Serves one connection on this thread until it closes.
    fn serve<S: Stream>(state: Arc<Mutex<State<T>>>, limits: Limits, mut r: S) {
        let Ok(w) = r.dup() else { return };
        let id = next_id();
        let out = Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            stream: Mutex::new(Box::new(w)),
            spare: Mutex::new(Vec::new()),
        });
        lock(&state).conns.insert(
            id,
            Conn {
                // Time plays no part on a stream: no partial message goes stale.
                link: Link::new(id, limits, Kind::Stream, 0, 0),
                out,
            },
        );
        r.set_polling(true);
        let mut broken = false;
        let mut stalled = false;
        // The outboxes with replies to send after each step (kept, so no step allocates).
        let mut ready: Vec<Arc<Outbox>> = Vec::new();
        while !broken {
            // Receive straight into the session's input buffer, outside the lock: only
            // this thread feeds this session, so no one else touches its framer meanwhile.
            let lent = lock(&state).conns.get_mut(&id).map(|c| c.link.lend_input());
            let Some((mut buf, at)) = lent else { return };
            // No room, or requests held back by the output limit (their client may be
            // waiting for the replies, sending nothing): process without receiving.
            let got = match buf.get_mut(at..) {
                Some(room) if !room.is_empty() && !stalled => receive(&mut r, room),
                _ => Some(usize::MAX),
            };
            let n = got.filter(|&n| n != usize::MAX).unwrap_or(0);
            {
                let mut st = lock(&state);
                let State { tree, conns } = &mut *st;
                let Some(c) = conns.get_mut(&id) else { return };
                c.link.give_back_input(buf, n, 0);
                if matches!(got, None | Some(0)) {
                    break;
                }
                broken = c.link.process(tree, 0).broken;
                stalled = c.link.session_ref().stalled();
                ready.extend(take_output(c));
                // What this connection did may answer reads pending on the others.
                for (cid, c) in conns.iter_mut() {
                    if *cid != id && c.link.session_ref().has_pending() {
                        c.link.session().poll(tree);
                        ready.extend(take_output(c));
                    }
                }
            }
            for o in ready.drain(..) {
                o.drain();
            }
        }
        let mut st = lock(&state);
        let State { tree, conns } = &mut *st;
        if let Some(mut c) = conns.remove(&id) {
            c.link.close(tree);
        }
        drop(st);
        // The replies to what came before a broken frame went out above.
        r.hang_up();
    }

    /// Accepts connections on a unix socket at `path` (a stale socket file is replaced).
    pub fn listen_unix(&self, path: &Path) -> io::Result<()> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let l = UnixListener::bind(path)?;
        let (state, limits) = (self.state.clone(), self.limits);
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let state = state.clone();
                thread::spawn(move || Self::serve(state, limits, s));
            }
        });
        Ok(())
    }

    /// Accepts TCP connections on `addr`; returns the bound address (port 0 picks one).
    pub fn listen_tcp(&self, addr: &str) -> io::Result<std::net::SocketAddr> {
        let l = TcpListener::bind(addr)?;
        let local = l.local_addr()?;
        let (state, limits) = (self.state.clone(), self.limits);
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = s.set_nodelay(true);
                let state = state.clone();
                thread::spawn(move || Self::serve(state, limits, s));
            }
        });
        Ok(local)
    }

    /// Serves until the process ends (the listeners' threads do the work).
    pub fn run(self) {
        loop {
            thread::park();
        }
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
