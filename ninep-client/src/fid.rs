//! Fids, open files and reads in flight.

use crate::mux::Sent;
use crate::{decode, names, unexpected, walk_from, Client, Error, Result, Stat};
use protocol::{Fcall, Qid};
use std::time::Duration;

/// A fid on the server. Clunked on drop (without waiting; errors ignored).
pub struct Fid {
    client: Client,
    num: u32,
    qid: Qid,
    iounit: u32,
    open: bool,
    gone: bool,
}

impl Fid {
    pub(crate) fn new(client: Client, num: u32, qid: Qid) -> Fid {
        Fid {
            client,
            num,
            qid,
            iounit: 0,
            open: false,
            gone: false,
        }
    }

    /// Gives up ownership: the fid is neither clunked nor forgotten by the server.
    pub(crate) fn into_raw(mut self) -> (u32, Qid) {
        self.gone = true;
        (self.num, self.qid)
    }

    pub(crate) fn set_qid(&mut self, q: Qid) {
        self.qid = q;
    }

    pub fn num(&self) -> u32 {
        self.num
    }

    pub fn qid(&self) -> Qid {
        self.qid
    }

    /// The iounit from Ropen/Rcreate (0 until opened, or if the server gave none).
    pub fn iounit(&self) -> u32 {
        self.iounit
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The most data one read or write on this fid moves.
    pub(crate) fn io_limit(&self) -> u32 {
        let max = self.client.max_io();
        if self.iounit == 0 {
            max
        } else {
            self.iounit.min(max)
        }
    }

    /// Walks from this fid to `path` into a new fid (an empty path clones it).
    pub fn walk(&self, path: &str) -> Result<Fid> {
        walk_from(&self.client, self.num, self.qid, &names(path))
    }

    /// Walks the given names (any number, sent MAXWELEM at a time).
    pub fn walk_names(&self, names: &[&str]) -> Result<Fid> {
        walk_from(&self.client, self.num, self.qid, names)
    }

    fn opened(&mut self, frame: &[u8]) -> Result<()> {
        match decode(frame)? {
            Fcall::Ropen { qid, iounit } | Fcall::Rcreate { qid, iounit } => {
                self.qid = qid;
                self.iounit = iounit;
                self.open = true;
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    pub fn open(&mut self, mode: u8) -> Result<()> {
        let frame = self.client.rpc(&Fcall::Topen {
            fid: self.num,
            mode,
        })?;
        self.opened(&frame)
    }

    /// Creates `name` in this directory; the fid becomes the new file, opened.
    pub fn create(&mut self, name: &str, perm: u32, mode: u8) -> Result<()> {
        let frame = self.client.rpc(&Fcall::Tcreate {
            fid: self.num,
            name,
            perm,
            mode,
        })?;
        self.opened(&frame)
    }

    /// One Tread; `count` is capped at the iounit.
    pub fn read(&self, offset: u64, count: u32) -> Result<Vec<u8>> {
        let frame = self.client.rpc(&Fcall::Tread {
            fid: self.num,
            offset,
            count: count.min(self.io_limit()),
        })?;
        rread_data(frame)
    }

    /// One Twrite of at most an iounit of `data`; returns the count the server took.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<usize> {
        let n = data.len().min(self.io_limit() as usize);
        let frame = self.client.rpc(&Fcall::Twrite {
            fid: self.num,
            offset,
            data: &data[..n],
        })?;
        match decode(&frame)? {
            Fcall::Rwrite { count } => Ok(count as usize),
            other => Err(unexpected(&other)),
        }
    }

    pub fn stat(&self) -> Result<Stat> {
        let frame = self.client.rpc(&Fcall::Tstat { fid: self.num })?;
        match decode(&frame)? {
            Fcall::Rstat { stat } => Ok(Stat::from(&stat)),
            other => Err(unexpected(&other)),
        }
    }

    pub fn wstat(&self, st: &Stat) -> Result<()> {
        let frame = self.client.rpc(&Fcall::Twstat {
            fid: self.num,
            stat: st.as_wstat(),
        })?;
        match decode(&frame)? {
            Fcall::Rwstat => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Clunks and waits for Rclunk.
    pub fn clunk(mut self) -> Result<()> {
        self.gone = true;
        let frame = self.client.rpc(&Fcall::Tclunk { fid: self.num })?;
        match decode(&frame)? {
            Fcall::Rclunk => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes the file; the fid is gone whatever the answer.
    pub fn remove(mut self) -> Result<()> {
        self.gone = true;
        let frame = self.client.rpc(&Fcall::Tremove { fid: self.num })?;
        match decode(&frame)? {
            Fcall::Rremove => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

impl Drop for Fid {
    fn drop(&mut self) {
        if !self.gone {
            self.client.send_forget(&Fcall::Tclunk { fid: self.num });
        }
    }
}

/// An open file.
pub struct File {
    fid: Fid,
}

impl File {
    pub(crate) fn from_fid(fid: Fid) -> File {
        File { fid }
    }

    /// The fid underneath, for the low-level operations.
    pub fn fid(&self) -> &Fid {
        &self.fid
    }

    pub fn into_fid(self) -> Fid {
        self.fid
    }

    pub fn qid(&self) -> Qid {
        self.fid.qid
    }

    pub fn iounit(&self) -> u32 {
        self.fid.iounit
    }

    pub fn stat(&self) -> Result<Stat> {
        self.fid.stat()
    }

    pub fn wstat(&self, st: &Stat) -> Result<()> {
        self.fid.wstat(st)
    }

    /// One Tread of at most an iounit.
    pub fn read_at(&self, offset: u64, count: u32) -> Result<Vec<u8>> {
        self.fid.read(offset, count)
    }

    /// One Twrite of at most an iounit; returns the count written.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize> {
        self.fid.write(offset, data)
    }

    /// Reads from offset 0 until a read returns nothing.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self.fid.read(out.len() as u64, self.fid.io_limit())?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Writes all of `data` at `offset`, in as many Twrites as it takes.
    pub fn write_all_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            let n = self.fid.write(offset + done as u64, &data[done..])?;
            if n == 0 {
                return Err(Error::Protocol("server wrote nothing".into()));
            }
            done += n;
        }
        Ok(())
    }

    /// One write of `s` at offset 0: how ctl files take commands.
    pub fn write_str(&self, s: &str) -> Result<()> {
        let n = self.fid.write(0, s.as_bytes())?;
        if n != s.len() {
            return Err(Error::Protocol(format!("short write: {n} of {}", s.len())));
        }
        Ok(())
    }

    pub fn clunk(self) -> Result<()> {
        self.fid.clunk()
    }

    pub fn remove(self) -> Result<()> {
        self.fid.remove()
    }
}

/// A Tread sent and not yet answered: wait for it, or flush it. Dropping it abandons
/// the read (its reply, if any, is thrown away).
pub struct Pending {
    client: Client,
    sent: Option<Sent>,
}

impl Pending {
    pub(crate) fn new(client: Client, sent: Sent) -> Pending {
        Pending {
            client,
            sent: Some(sent),
        }
    }

    pub fn tag(&self) -> u16 {
        self.sent.as_ref().map_or(protocol::NOTAG, |s| s.tag)
    }

    /// Waits for the reply (within the client's timeout, if any).
    pub fn wait(mut self) -> Result<Vec<u8>> {
        let sent = self
            .sent
            .take()
            .ok_or_else(|| Error::Protocol("no read".into()))?;
        rread_data(self.client.mux().wait(sent)?)
    }

    /// Waits at most `t`: `Ok(None)` if the read is still pending (it stays so).
    pub fn wait_timeout(&mut self, t: Duration) -> Result<Option<Vec<u8>>> {
        let sent = self
            .sent
            .take()
            .ok_or_else(|| Error::Protocol("no read".into()))?;
        match self.client.mux().wait_for(sent, t) {
            Ok(frame) => rread_data(frame).map(Some),
            Err((sent, None)) => {
                self.sent = Some(sent);
                Ok(None)
            }
            Err((sent, Some(e))) => {
                self.sent = Some(sent);
                Err(e)
            }
        }
    }

    /// Sends Tflush for the read and returns after Rflush. A reply that raced in before
    /// the Rflush is discarded; none can come after it.
    pub fn flush(mut self) -> Result<()> {
        let sent = self
            .sent
            .take()
            .ok_or_else(|| Error::Protocol("no read".into()))?;
        let r = self.client.rpc(&Fcall::Tflush { oldtag: sent.tag });
        match r {
            Ok(frame) => {
                self.client.mux().flushed(sent);
                match decode(&frame)? {
                    Fcall::Rflush => Ok(()),
                    other => Err(unexpected(&other)),
                }
            }
            Err(e) => {
                // Without Rflush the old tag may still be answered: leave it to the reader.
                self.client.mux().shared.abandon(sent.tag);
                Err(e)
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(s) = self.sent.take() {
            self.client.mux().shared.abandon(s.tag);
        }
    }
}

/// A Twrite sent and not yet answered. Dropping it abandons the reply (the write still
/// happens on the server; only its count or error is lost).
pub struct PendingWrite {
    client: Client,
    sent: Option<Sent>,
}

impl PendingWrite {
    pub(crate) fn new(client: Client, sent: Sent) -> PendingWrite {
        PendingWrite {
            client,
            sent: Some(sent),
        }
    }

    pub fn tag(&self) -> u16 {
        self.sent.as_ref().map_or(protocol::NOTAG, |s| s.tag)
    }

    /// Waits for the reply: the count the server took, or its error.
    pub fn wait(mut self) -> Result<usize> {
        let sent = self
            .sent
            .take()
            .ok_or_else(|| Error::Protocol("no write".into()))?;
        match decode(&self.client.mux().wait(sent)?)? {
            Fcall::Rwrite { count } => Ok(count as usize),
            other => Err(unexpected(&other)),
        }
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if let Some(s) = self.sent.take() {
            self.client.mux().shared.abandon(s.tag);
        }
    }
}

/// An Rread's data, moved to the front of its frame (no second buffer).
fn rread_data(mut frame: Vec<u8>) -> Result<Vec<u8>> {
    let (at, n) = match decode(&frame)? {
        Fcall::Rread { data } => (data.as_ptr() as usize - frame.as_ptr() as usize, data.len()),
        other => return Err(unexpected(&other)),
    };
    frame.truncate(at + n);
    frame.drain(..at);
    Ok(frame)
}
