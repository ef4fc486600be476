//! The connection: one writer shared under a lock, and the reading side shared by whoever
//! waits for a reply, so a blocked read does not hold up other requests.
//!
//! A caller waiting with no timeout reads for itself when no one else is reading: it
//! takes the reader ([`Frames`]), reads replies (handing others' to their waiters) until
//! its own comes, and gives the reader back. A thread alone on a connection so sleeps in
//! the socket's read and is woken by its reply: no thread hand-off per reply. Whoever
//! cannot read for itself (another holds the reader, or it waits with a timeout, which a
//! blocking read cannot keep) marks its tag *needy*, and the reader thread reads until no
//! needy tag is left, then gives the reader back. A client with a timeout set waits only
//! that way, and its reader thread keeps reading, as a dedicated reader would. A reply
//! nobody will wait for (abandoned) is needy too, so unread replies never fill the socket
//! and stop the server.

use crate::error::{Error, Result};
use crate::frames::Frames;
use protocol::{Fcall, IOHDRSZ, NOTAG};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// Who waits for a tag's reply, and whether the reader thread must read it (`needy`).
enum Waiter {
    Live {
        tx: Sender<Vec<u8>>,
        needy: bool,
    },
    /// Nobody any more (a timeout, a dropped pending read, a clunk on drop): the reply
    /// is read and thrown away, and the tag freed then. Always needy.
    Abandoned,
}

impl Waiter {
    fn needy(&self) -> bool {
        matches!(self, Waiter::Live { needy: true, .. } | Waiter::Abandoned)
    }
}

struct State {
    waiters: HashMap<u16, Waiter>,
    /// Tags that may not be reused yet: waited on, abandoned, or being flushed.
    used: HashSet<u16>,
    next_tag: u16,
    /// Why the connection is gone, once it is.
    dead: Option<String>,
    /// Waiters the reader thread must read for.
    needy: usize,
    /// The client has a timeout: every wait is needy, and the reader thread keeps the
    /// reader between replies.
    timed: bool,
    /// The reader thread sleeps, waiting for a needy tag.
    reader_idle: bool,
    /// The client is gone: the reader thread ends.
    closed: bool,
}

impl State {
    /// Takes `tag`'s waiter out, keeping the count of needy ones.
    fn take(&mut self, tag: u16) -> Option<Waiter> {
        let w = self.waiters.remove(&tag)?;
        if w.needy() {
            self.needy -= 1;
        }
        Some(w)
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the reader thread.
    wake: Condvar,
    /// The reading side: held by whoever reads.
    frames: Mutex<Frames>,
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
        st.waiters.insert(tag, Waiter::Live { tx, needy: false });
        Ok((tag, rx))
    }

    /// Wakes the reader thread if it sleeps and a needy tag waits for it.
    fn wake_reader(&self, st: &mut State) {
        if st.reader_idle && st.needy > 0 {
            st.reader_idle = false;
            self.wake.notify_one();
        }
    }

    /// `tag`'s waiter will not read for itself: the reader thread reads until its reply
    /// has come.
    fn need(&self, tag: u16) {
        let mut st = lock(&self.state);
        if let Some(Waiter::Live { needy, .. }) = st.waiters.get_mut(&tag) {
            if !*needy {
                *needy = true;
                st.needy += 1;
                self.wake_reader(&mut st);
            }
        }
    }

    /// The waiter got its reply (or gave up after making sure none can come).
    fn free(&self, tag: u16) {
        let mut st = lock(&self.state);
        st.take(tag);
        st.used.remove(&tag);
    }

    /// The waiter goes away before its reply: whoever is last frees the tag.
    pub(crate) fn abandon(&self, tag: u16) {
        let mut st = lock(&self.state);
        match st.take(tag) {
            Some(_) => {
                st.waiters.insert(tag, Waiter::Abandoned);
                st.needy += 1;
                self.wake_reader(&mut st);
            }
            // The reply was already delivered to the dropped channel.
            None => {
                st.used.remove(&tag);
            }
        }
    }

    /// Hands a reply to its tag's waiter.
    fn deliver(&self, frame: Vec<u8>) {
        let tag = u16::from_le_bytes([frame[5], frame[6]]);
        let mut st = lock(&self.state);
        match st.take(tag) {
            // The receiver is gone (dropped after a timeout): nobody frees the tag but us.
            Some(Waiter::Live { tx, .. }) if tx.send(frame).is_err() => {
                st.used.remove(&tag);
            }
            Some(Waiter::Live { .. }) => {}
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
        st.needy = 0;
        self.wake.notify_one();
    }

    fn why_dead(&self) -> String {
        lock(&self.state)
            .dead
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }

    /// Reads one reply and delivers it; false once the connection is dead.
    fn read_one(&self, frames: &mut Frames) -> bool {
        match frames.next() {
            Ok(frame) => {
                self.deliver(frame);
                true
            }
            Err(why) => {
                self.die(why);
                false
            }
        }
    }
}

/// The reader thread: sleeps until a tag is needy, then takes the reader (once whoever
/// holds it gives it back) and reads until none is, or, for a client with a timeout, for
/// good.
fn reader_loop(shared: Arc<Shared>) {
    loop {
        {
            let mut st = lock(&shared.state);
            while st.needy == 0 && !st.closed && st.dead.is_none() {
                st.reader_idle = true;
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.reader_idle = false;
            if st.closed || st.dead.is_some() {
                return;
            }
        }
        let mut frames = lock(&shared.frames);
        loop {
            {
                let st = lock(&shared.state);
                if st.closed || st.dead.is_some() {
                    return;
                }
                if st.needy == 0 && !st.timed {
                    break;
                }
            }
            if !shared.read_one(&mut frames) {
                return;
            }
        }
    }
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
                needy: 0,
                timed: false,
                reader_idle: false,
                closed: false,
            }),
            wake: Condvar::new(),
            frames: Mutex::new(Frames::new(r, max)),
        });
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("9p-reader".into())
            .spawn(move || reader_loop(s2))?;
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
        lock(&self.shared.state).timed = t.is_some();
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        *lock(&self.timeout)
    }

    /// Sends `f` under a fresh tag (NOTAG for Tversion).
    pub(crate) fn send(&self, f: &Fcall<'_>, msize: u32) -> Result<Sent> {
        let notag = matches!(f, Fcall::Tversion { .. });
        // Most requests are small: try a small buffer before one of msize; a Twrite's
        // size is known. Encoding comes first, with a placeholder tag, so an oversized
        // message costs no tag.
        let want = match f {
            Fcall::Twrite { data, .. } => IOHDRSZ + data.len(),
            _ => 512,
        };
        let mut buf = vec![0u8; want.min(msize as usize)];
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

    /// Reads replies on this thread until `s`'s has come, if no one else is reading
    /// (`None`: someone is).
    fn read_own(&self, s: &Sent) -> Option<std::result::Result<Vec<u8>, RecvTimeoutError>> {
        let mut frames = match self.shared.frames.try_lock() {
            Ok(f) => f,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        // Whoever held the reader before may have delivered the reply already; from
        // here on only this thread delivers.
        loop {
            match s.rx.try_recv() {
                Ok(frame) => return Some(Ok(frame)),
                Err(TryRecvError::Disconnected) => {
                    return Some(Err(RecvTimeoutError::Disconnected))
                }
                Err(TryRecvError::Empty) => {}
            }
            if !self.shared.read_one(&mut frames) {
                return Some(Err(RecvTimeoutError::Disconnected));
            }
        }
    }

    /// Waits for `s`'s reply on its channel, the reader thread reading for it.
    fn recv(
        &self,
        s: &Sent,
        t: Option<Duration>,
    ) -> std::result::Result<Vec<u8>, RecvTimeoutError> {
        self.shared.need(s.tag);
        match spin_recv(&s.rx) {
            Some(frame) => Ok(frame),
            None => match t {
                None => s.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => s.rx.recv_timeout(t),
            },
        }
    }

    /// Waits for the reply to `s` (within the client's timeout, if any). The tag is
    /// freed whatever happens.
    pub(crate) fn wait(&self, s: Sent) -> Result<Vec<u8>> {
        let r = match self.timeout() {
            None => match self.read_own(&s) {
                Some(r) => r,
                None => self.recv(&s, None),
            },
            t => self.recv(&s, t),
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
        self.shared.need(s.tag);
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
        {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            self.shared.wake.notify_one();
        }
        if let Some(f) = &self.shutdown {
            f();
        }
    }
}
