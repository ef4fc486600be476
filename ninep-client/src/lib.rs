//! A std 9P2000 client with concurrent tags.
//!
//! Replies reach the thread waiting on their tag whoever reads them (the waiter itself
//! when it is alone, else the one reading, or the connection's reader thread), so a read
//! that blocks on the server (the #X `wait` file) does not hold up requests other threads
//! make on the same connection. [`Client`] is cheap to clone and shareable across
//! threads.
//!
//! ```no_run
//! use ninep_client::Client;
//! let c = Client::dial("unix!/tmp/9p.sock", "glenda", "")?;
//! let f = c.open("hello", protocol::om::READ)?;
//! let data = f.read_all()?;
//! # Ok::<(), ninep_client::Error>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod fid;
mod frames;
mod mux;

pub use error::{Error, Result};
pub use fid::{Fid, File, Pending, PendingWrite};
pub use protocol::{dm, om, qt, Qid, Stat, BULK_IO};

use mux::Mux;
use protocol::{DirIter, Fcall, Wnames, IOHDRSZ, MAXWELEM, NOFID};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The msize offered by `dial`: 64 KiB of data plus the Twrite/Rread header.
pub const DEFAULT_MSIZE: u32 = 64 * 1024 + IOHDRSZ as u32;

/// The msize for clients that move bulk data (the vmx tool's uploads and queue disks):
/// [`protocol::BULK_IO`] (1 MiB) of data, the most the hypervisor's engine takes; a
/// server with less answers with its own.
pub const BULK_MSIZE: u32 = protocol::BULK_IO + IOHDRSZ as u32;

/// A stream a connection can run over: it splits into a reader and a writer half and can
/// be shut down so the reader thread ends when the client goes away.
pub trait Conn: Read + Write + Send + Sync + 'static {
    fn split(&self) -> io::Result<Self>
    where
        Self: Sized;
    fn close(&self);
}

impl Conn for TcpStream {
    fn split(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Conn for UnixStream {
    fn split(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

struct Inner {
    mux: Mux,
    msize: u32,
    /// The first attach's fid and qid.
    root: u32,
    root_qid: Qid,
    next_fid: AtomicU32,
}

/// A 9P2000 connection with one attach (more with [`Client::attach`]).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Parses a Plan 9 dial string: `unix!/path`, `tcp!host!port`, a bare `/path` or
/// `host:port`.
enum Addr {
    Unix(String),
    Tcp(String),
}

fn parse_addr(addr: &str) -> Result<Addr> {
    let parts: Vec<&str> = addr.split('!').collect();
    match parts.as_slice() {
        ["unix", path] => Ok(Addr::Unix(path.to_string())),
        ["tcp" | "net", host, port] => Ok(Addr::Tcp(format!("{host}:{port}"))),
        [one] if one.starts_with('/') || one.starts_with('.') => Ok(Addr::Unix(one.to_string())),
        [one] if one.contains(':') => Ok(Addr::Tcp(one.to_string())),
        _ => Err(Error::Protocol(format!("bad dial string {addr:?}"))),
    }
}

/// Splits a slash-separated path into walk names (empty and `.` elements dropped).
fn names(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect()
}

impl Client {
    /// Connects, negotiates 9P2000 at [`DEFAULT_MSIZE`] and attaches as `uname` to `aname`.
    pub fn dial(addr: &str, uname: &str, aname: &str) -> Result<Client> {
        Self::dial_msize(addr, uname, aname, DEFAULT_MSIZE)
    }

    pub fn dial_msize(addr: &str, uname: &str, aname: &str, msize: u32) -> Result<Client> {
        match parse_addr(addr)? {
            Addr::Unix(p) => Self::over_msize(UnixStream::connect(p)?, uname, aname, msize),
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Self::over_msize(s, uname, aname, msize)
            }
        }
    }

    /// Runs a session over an already connected stream (Tversion, Tattach).
    pub fn over<S: Conn>(stream: S, uname: &str, aname: &str) -> Result<Client> {
        Self::over_msize(stream, uname, aname, DEFAULT_MSIZE)
    }

    pub fn over_msize<S: Conn>(stream: S, uname: &str, aname: &str, msize: u32) -> Result<Client> {
        let reader = stream.split()?;
        let closer = stream.split()?;
        let shutdown: Box<dyn Fn() + Send + Sync> = Box::new(move || closer.close());
        Self::over_halves(
            Box::new(reader),
            Box::new(stream),
            Some(shutdown),
            uname,
            aname,
            msize,
        )
    }

    /// Runs a session over separate halves (a pipe pair, a serial line). `shutdown`, if
    /// given, is called when the last handle goes, to end the reader thread.
    pub fn over_halves(
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        shutdown: Option<Box<dyn Fn() + Send + Sync>>,
        uname: &str,
        aname: &str,
        msize: u32,
    ) -> Result<Client> {
        let mux = Mux::new(reader, writer, shutdown, msize)?;
        let version = Fcall::Tversion {
            msize,
            version: protocol::VERSION,
        };
        let frame = mux.wait(mux.send(&version, msize)?)?;
        let msize = match decode(&frame)? {
            Fcall::Rversion { msize: m, version } if version == protocol::VERSION => {
                if m < protocol::HEADER_LEN as u32 + IOHDRSZ as u32 || m > msize {
                    return Err(Error::Protocol(format!("server msize {m}")));
                }
                m
            }
            Fcall::Rversion { version, .. } => {
                return Err(Error::Protocol(format!("server speaks {version:?}")))
            }
            other => return Err(unexpected(&other)),
        };
        let mut c = Client {
            inner: Arc::new(Inner {
                mux,
                msize,
                root: NOFID,
                root_qid: Qid::default(),
                next_fid: AtomicU32::new(1),
            }),
        };
        let root = c.attach(uname, aname)?;
        let (num, qid) = root.into_raw();
        let inner = Arc::get_mut(&mut c.inner)
            .ok_or_else(|| Error::Protocol("client shared during attach".into()))?;
        inner.root = num;
        inner.root_qid = qid;
        Ok(c)
    }

    /// The negotiated msize.
    pub fn msize(&self) -> u32 {
        self.inner.msize
    }

    /// The most data one Tread/Twrite carries at this msize.
    pub fn max_io(&self) -> u32 {
        self.inner.msize - IOHDRSZ as u32
    }

    /// The root's qid from the first attach.
    pub fn root_qid(&self) -> Qid {
        self.inner.root_qid
    }

    /// Limits how long any reply is waited for (None, the default: forever). A request
    /// that times out fails with an `Io` error of kind `TimedOut`; its tag stays
    /// reserved until the late reply arrives.
    pub fn set_timeout(&self, t: Option<Duration>) {
        self.inner.mux.set_timeout(t);
    }

    /// Requests sent on this connection so far (every attach's, Tversion included):
    /// round trips on the link, for tests that count them.
    pub fn requests(&self) -> u64 {
        self.inner.mux.sent()
    }

    pub(crate) fn new_fid(&self) -> u32 {
        loop {
            let n = self.inner.next_fid.fetch_add(1, Ordering::Relaxed);
            if n != NOFID && n != self.inner.root {
                return n;
            }
        }
    }

    /// Sends one request and waits for its reply frame. Rerror becomes `Error::Remote`.
    pub fn rpc(&self, f: &Fcall<'_>) -> Result<Vec<u8>> {
        let m = &self.inner.mux;
        let frame = m.wait(m.send(f, self.inner.msize)?)?;
        if let Fcall::Rerror { ename } = decode(&frame)? {
            return Err(Error::Remote(ename.to_string()));
        }
        Ok(frame)
    }

    /// Sends a request without waiting for its reply (clunk on drop).
    pub(crate) fn send_forget(&self, f: &Fcall<'_>) {
        let m = &self.inner.mux;
        if let Ok(s) = m.send(f, self.inner.msize) {
            m.shared.abandon(s.tag);
        }
    }

    pub(crate) fn mux(&self) -> &Mux {
        &self.inner.mux
    }

    /// Another attach on this connection, as `uname` to `aname`.
    pub fn attach(&self, uname: &str, aname: &str) -> Result<Fid> {
        let fid = self.new_fid();
        let frame = self.rpc(&Fcall::Tattach {
            fid,
            afid: NOFID,
            uname,
            aname,
        })?;
        match decode(&frame)? {
            Fcall::Rattach { qid } => Ok(Fid::new(self.clone(), fid, qid)),
            other => Err(unexpected(&other)),
        }
    }

    /// Walks from the root to `path` (relative to the attach; a leading `/` is fine).
    pub fn walk(&self, path: &str) -> Result<Fid> {
        walk_from(self, self.inner.root, self.inner.root_qid, &names(path))
    }

    pub fn open(&self, path: &str, mode: u8) -> Result<File> {
        let mut f = self.walk(path)?;
        f.open(mode)?;
        Ok(File::from_fid(f))
    }

    /// Creates `name` in directory `dir_path` with `perm` (`dm::DIR` for a directory) and
    /// opens it with `mode`.
    pub fn create(&self, dir_path: &str, name: &str, perm: u32, mode: u8) -> Result<File> {
        let mut f = self.walk(dir_path)?;
        f.create(name, perm, mode)?;
        Ok(File::from_fid(f))
    }

    pub fn stat(&self, path: &str) -> Result<Stat> {
        self.walk(path)?.stat()
    }

    pub fn wstat(&self, path: &str, st: &Stat) -> Result<()> {
        self.walk(path)?.wstat(st)
    }

    /// The entries of a directory.
    pub fn ls(&self, path: &str) -> Result<Vec<Stat>> {
        let data = self.open(path, om::READ)?.read_all()?;
        DirIter::new(&data)
            .map(|d| d.map(|d| Stat::from(&d)).map_err(Error::from))
            .collect()
    }

    pub fn remove(&self, path: &str) -> Result<()> {
        self.walk(path)?.remove()
    }

    /// Reads the whole file at `path`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        self.open(path, om::READ)?.read_all()
    }

    /// Starts a read on an open file without waiting for it; see [`Pending`].
    pub fn start_read(&self, file: &File, offset: u64, count: u32) -> Result<Pending> {
        let fid = file.fid();
        let count = count.min(fid.io_limit());
        let f = Fcall::Tread {
            fid: fid.num(),
            offset,
            count,
        };
        let sent = self.inner.mux.send(&f, self.inner.msize)?;
        Ok(Pending::new(self.clone(), sent))
    }

    /// Sends one Twrite of `data` (at most an iounit) without waiting for its reply: the
    /// caller goes on with other requests (e.g. a blocked read's reply) and collects the
    /// Rwrite later; see [`PendingWrite`].
    pub fn start_write(&self, file: &File, offset: u64, data: &[u8]) -> Result<PendingWrite> {
        let fid = file.fid();
        let n = data.len().min(fid.io_limit() as usize);
        let f = Fcall::Twrite {
            fid: fid.num(),
            offset,
            data: &data[..n],
        };
        let sent = self.inner.mux.send(&f, self.inner.msize)?;
        Ok(PendingWrite::new(self.clone(), sent))
    }
}

/// Walks `names` from fid `from` into a new fid, in steps of at most MAXWELEM names.
/// A walk that stops short fails with the server's error, or "file does not exist".
pub(crate) fn walk_from(c: &Client, from: u32, qid: Qid, names: &[&str]) -> Result<Fid> {
    let newfid = c.new_fid();
    let mut chunks: Vec<&[&str]> = names.chunks(MAXWELEM).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let mut cur = from;
    let mut qid = qid;
    let mut fid: Option<Fid> = None;
    for chunk in chunks {
        let frame = c.rpc(&Fcall::Twalk {
            fid: cur,
            newfid,
            wnames: Wnames::new(chunk)?,
        })?;
        let Fcall::Rwalk { wqids } = decode(&frame)? else {
            return Err(unexpected(&decode(&frame)?));
        };
        if wqids.as_slice().len() != chunk.len() {
            // A partial walk leaves newfid untouched (walk(5)); an earlier step's
            // newfid is clunked by `fid` dropping.
            return Err(Error::Remote("file does not exist".into()));
        }
        if let Some(q) = wqids.as_slice().last() {
            qid = *q;
        }
        if fid.is_none() {
            fid = Some(Fid::new(c.clone(), newfid, qid));
        } else if let Some(f) = fid.as_mut() {
            f.set_qid(qid);
        }
        cur = newfid;
    }
    fid.ok_or_else(|| Error::Protocol("empty walk".into()))
}

pub(crate) fn decode(frame: &[u8]) -> Result<Fcall<'_>> {
    let (_, f) = Fcall::decode(frame, frame.len() as u32)?;
    Ok(f)
}

pub(crate) fn unexpected(f: &Fcall<'_>) -> Error {
    match f {
        Fcall::Rerror { ename } => Error::Remote(ename.to_string()),
        other => Error::Protocol(format!("unexpected reply {:?}", other.msg_type())),
    }
}

#[cfg(test)]
mod tests;
