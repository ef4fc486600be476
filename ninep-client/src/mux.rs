//! The connection: one writer shared under a lock, one reader thread that hands each
//! reply to whoever waits on its tag, so a blocked read does not hold up other requests.
//! Before the first reply (the answer to Tversion) the reader skips anything that is not
//! one, as a serial line may carry other output first.

use crate::error::{Error, Result};
use protocol::{Fcall, MsgType, HEADER_LEN, NOTAG};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Who waits for a tag's reply.
enum Waiter {
    Live(Sender<Vec<u8>>),
    /// Nobody any more (a timeout, a dropped pending read, a clunk on drop): the reader
    /// frees the tag when the reply comes.
    Abandoned,
}

struct State {
    waiters: HashMap<u16, Waiter>,
    /// Tags that may not be reused yet: waited on, abandoned, or being flushed.
    used: HashSet<u16>,
    next_tag: u16,
    /// Why the connection is gone, once it is.
    dead: Option<String>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder leaves consistent data here (no multi-step invariants span a
    // panic point), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn dead_error(why: &str) -> Error {
        Error::Io(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            why.to_string(),
        ))
    }

    /// Reserves a tag (or NOTAG for Tversion) and the channel its reply comes on.
    fn register(&self, want: Option<u16>) -> Result<(u16, Receiver<Vec<u8>>)> {
        let mut st = lock(&self.state);
        if let Some(why) = &st.dead {
            return Err(Self::dead_error(why));
        }
        let tag = match want {
            Some(t) => t,
            None => {
                let mut found = None;
                for _ in 0..=u16::MAX as u32 {
                    let t = st.next_tag;
                    st.next_tag = st.next_tag.wrapping_add(1);
                    if t != NOTAG && !st.used.contains(&t) {
                        found = Some(t);
                        break;
                    }
                }
                found.ok_or_else(|| Error::Protocol("no free tags".into()))?
            }
        };
        let (tx, rx) = channel();
        st.used.insert(tag);
        st.waiters.insert(tag, Waiter::Live(tx));
        Ok((tag, rx))
    }

    /// The waiter got its reply (or gave up after making sure none can come).
    fn free(&self, tag: u16) {
        let mut st = lock(&self.state);
        st.waiters.remove(&tag);
        st.used.remove(&tag);
    }

    /// The waiter goes away before its reply: whoever is last frees the tag.
    pub(crate) fn abandon(&self, tag: u16) {
        let mut st = lock(&self.state);
        match st.waiters.get_mut(&tag) {
            Some(w) => *w = Waiter::Abandoned,
            // The reply was already delivered to the dropped channel.
            None => {
                st.used.remove(&tag);
            }
        }
    }

    /// A reply arrived from the reader thread.
    fn deliver(&self, tag: u16, frame: Vec<u8>) {
        let mut st = lock(&self.state);
        match st.waiters.remove(&tag) {
            // The receiver is gone (dropped after a timeout): nobody frees the tag but us.
            Some(Waiter::Live(tx)) if tx.send(frame).is_err() => {
                st.used.remove(&tag);
            }
            Some(Waiter::Live(_)) => {}
            Some(Waiter::Abandoned) => {
                st.used.remove(&tag);
            }
            // A reply nobody asked for (or a reply after Rflush, which a correct server
            // never sends): dropped.
            None => {}
        }
    }

    fn die(&self, why: String) {
        let mut st = lock(&self.state);
        if st.dead.is_none() {
            st.dead = Some(why);
        }
        // Dropping the senders wakes every waiter with a disconnect.
        st.waiters.clear();
    }

    fn why_dead(&self) -> String {
        lock(&self.state)
            .dead
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }
}

/// Is `h` the header of an answer to Tversion (Rversion or Rerror, tag NOTAG)?
fn is_version_reply(h: &[u8; HEADER_LEN], max: u32) -> bool {
    let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let ty = h[4];
    (HEADER_LEN as u32 + 2..=max).contains(&size)
        && (ty == MsgType::Rversion as u8 || ty == MsgType::Rerror as u8)
        && u16::from_le_bytes([h[5], h[6]]) == NOTAG
}

/// Skips whatever precedes the answer to Tversion (a serial line may carry firmware or
/// boot loader output first); returns its header.
fn find_version_reply(r: &mut dyn Read, max: u32) -> io::Result<[u8; HEADER_LEN]> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    while !is_version_reply(&h, max) {
        h.copy_within(1.., 0);
        r.read_exact(&mut h[HEADER_LEN - 1..])?;
    }
    Ok(h)
}

/// Reads frames until the stream ends or lies, handing each to its tag's waiter.
fn reader_loop(shared: Arc<Shared>, mut r: Box<dyn Read + Send>, max: u32) {
    let mut first = true;
    let why = loop {
        let mut size = [0u8; 4];
        let mut head = None;
        if first {
            first = false;
            match find_version_reply(&mut r, max) {
                Ok(h) => {
                    size.copy_from_slice(&h[..4]);
                    head = Some(h);
                }
                Err(e) => break format!("reading reply: {e}"),
            }
        } else if let Err(e) = r.read_exact(&mut size) {
            break format!("reading reply: {e}");
        }
        let n = u32::from_le_bytes(size);
        if (n as usize) < HEADER_LEN || n > max {
            break format!("bad reply size {n}");
        }
        let mut frame = vec![0u8; n as usize];
        let got = match head {
            Some(h) => {
                frame[..HEADER_LEN].copy_from_slice(&h);
                HEADER_LEN
            }
            None => {
                frame[..4].copy_from_slice(&size);
                4
            }
        };
        if let Err(e) = r.read_exact(&mut frame[got..]) {
            break format!("reading reply: {e}");
        }
        let tag = u16::from_le_bytes([frame[5], frame[6]]);
        shared.deliver(tag, frame);
    };
    shared.die(why);
}

/// How long a waiter polls for its reply before sleeping. Most replies come within
/// tens of microseconds, and a futex sleep and wake-up costs about as much again (several
/// times that on a loaded virtual machine), so a short poll that yields the CPU roughly
/// quadruples small-request throughput; a reply that takes longer costs one more wake-up.
const SPIN: Duration = Duration::from_micros(100);

fn spin_recv(rx: &Receiver<Vec<u8>>) -> Option<Vec<u8>> {
    let start = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(frame) => return Some(frame),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if start.elapsed() >= SPIN => return None,
            Err(TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

/// The connection's sending side and the shared tag table.
pub(crate) struct Mux {
    pub(crate) shared: Arc<Shared>,
    writer: Mutex<Box<dyn Write + Send>>,
    shutdown: Option<Box<dyn Fn() + Send + Sync>>,
    timeout: Mutex<Option<Duration>>,
    /// Requests written on the connection.
    sent: AtomicU64,
}

/// A request sent and not yet answered.
pub(crate) struct Sent {
    pub(crate) tag: u16,
    pub(crate) rx: Receiver<Vec<u8>>,
}

impl Mux {
    /// Starts the reader thread; replies larger than `max` (the msize offered) kill the
    /// connection.
    pub(crate) fn new(
        r: Box<dyn Read + Send>,
        w: Box<dyn Write + Send>,
        shutdown: Option<Box<dyn Fn() + Send + Sync>>,
        max: u32,
    ) -> Result<Mux> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiters: HashMap::new(),
                used: HashSet::new(),
                next_tag: 0,
                dead: None,
            }),
        });
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("9p-reader".into())
            .spawn(move || reader_loop(s2, r, max))?;
        Ok(Mux {
            shared,
            writer: Mutex::new(w),
            shutdown,
            timeout: Mutex::new(None),
            sent: AtomicU64::new(0),
        })
    }

    /// Requests written on the connection so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(AtomicOrdering::Relaxed)
    }

    pub(crate) fn set_timeout(&self, t: Option<Duration>) {
        *lock(&self.timeout) = t;
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        *lock(&self.timeout)
    }

    /// Sends `f` under a fresh tag (NOTAG for Tversion).
    pub(crate) fn send(&self, f: &Fcall<'_>, msize: u32) -> Result<Sent> {
        let notag = matches!(f, Fcall::Tversion { .. });
        // Most requests are small: try a small buffer before one of msize. Encoding
        // comes first, with a placeholder tag, so an oversized message costs no tag.
        let mut buf = vec![0u8; 512.min(msize as usize)];
        let n = match f.encode(0, &mut buf) {
            Ok(n) => n,
            Err(_) => {
                buf = vec![0u8; msize as usize];
                f.encode(0, &mut buf)?
            }
        };
        buf.truncate(n);
        let (tag, rx) = self.shared.register(notag.then_some(NOTAG))?;
        buf[5..7].copy_from_slice(&tag.to_le_bytes());
        let r = {
            let mut w = lock(&self.writer);
            w.write_all(&buf).and_then(|_| w.flush())
        };
        if let Err(e) = r {
            self.shared.free(tag);
            return Err(e.into());
        }
        self.sent.fetch_add(1, AtomicOrdering::Relaxed);
        Ok(Sent { tag, rx })
    }

    /// Waits for the reply to `s` (within the client's timeout, if any). The tag is
    /// freed whatever happens.
    pub(crate) fn wait(&self, s: Sent) -> Result<Vec<u8>> {
        let r = match spin_recv(&s.rx) {
            Some(frame) => Ok(frame),
            None => match self.timeout() {
                None => s.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => s.rx.recv_timeout(t),
            },
        };
        match r {
            Ok(frame) => {
                self.shared.free(s.tag);
                Ok(frame)
            }
            Err(RecvTimeoutError::Timeout) => {
                self.shared.abandon(s.tag);
                Err(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "9p reply timed out",
                )))
            }
            Err(RecvTimeoutError::Disconnected) => Err(Shared::dead_error(&self.shared.why_dead())),
        }
    }

    /// Like `wait`, but gives the request back if no reply came within `t`.
    pub(crate) fn wait_for(
        &self,
        s: Sent,
        t: Duration,
    ) -> std::result::Result<Vec<u8>, (Sent, Option<Error>)> {
        match s.rx.recv_timeout(t) {
            Ok(frame) => {
                self.shared.free(s.tag);
                Ok(frame)
            }
            Err(RecvTimeoutError::Timeout) => Err((s, None)),
            Err(RecvTimeoutError::Disconnected) => {
                let e = Shared::dead_error(&self.shared.why_dead());
                Err((s, Some(e)))
            }
        }
    }

    /// After Rflush for `s`: no reply will come, or one raced in and is thrown away.
    pub(crate) fn flushed(&self, s: Sent) {
        self.shared.free(s.tag);
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        if let Some(f) = &self.shutdown {
            f();
        }
    }
}
