//! A queue's requests served within the device's [`Budget`] ([`Blk::serve_queue`]): at
//! most its chains taken from the ring and its bytes of data moved per call. What is left
//! (chains still in the ring, chains taken and not begun, a request moved in part) waits
//! in the queue and the device, in order, for the next call ([`Blk::pending`]); the used
//! entries of each call are those it finished. A reset drops it all ([`Blk::reset`]).

use super::{Blk, Capacity, Disk, Op, Request, Step, S_IOERR, S_OK};
use crate::queue::{Chain, GuestMem, Queue};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A request a budget ran out in the middle of.
pub(super) struct InFlight {
    req: Request,
    /// Data bytes moved so far.
    done: u64,
    /// Its status so far (a read goes on with zeros after an error).
    status: u8,
}

impl<D: Capacity> Blk<D> {
    /// Work is left for another [`Blk::serve_queue`] of `q` without a notify: a request
    /// begun, chains taken and not begun, or chains left in the ring.
    pub fn pending(&self, q: &Queue) -> bool {
        self.inflight.is_some() || !self.waiting.is_empty() || q.behind()
    }

    /// Serves the requests the driver made available on `q` (`limit`: the end of guest
    /// memory), oldest first, as far as the device's budget goes, and returns those done
    /// to it (a deferred disk's reads, writes and flushes are parked instead, at most the
    /// queue's size of them); true when the driver wants an interrupt. A chain that
    /// carries no request breaks the queue (Err, the reason).
    pub fn serve_queue<M: GuestMem + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &mut M,
        limit: u64,
    ) -> Result<bool, String>
    where
        D: Disk<M>,
    {
        let mut done = Vec::new();
        if let Err(e) = self.serve_budget(q, mem, limit, &mut done) {
            q.broken = Some(e.clone());
            return Err(e);
        }
        if done.is_empty() {
            return Ok(false);
        }
        q.put(mem, &done)?;
        Ok(q.wants_interrupt())
    }

    /// [`Blk::serve_queue`]'s work, the used entries to `done`.
    fn serve_budget<M: GuestMem + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &mut M,
        limit: u64,
        done: &mut Vec<(u16, u32)>,
    ) -> Result<(), String>
    where
        D: Disk<M>,
    {
        let mut chains = self.budget.chains;
        let mut bytes = self.budget.bytes;
        loop {
            if let Some(mut f) = self.inflight.take() {
                let n = (f.req.len - f.done).min(bytes);
                self.advance(&mut f, mem, n)?;
                bytes -= n;
                if f.done < f.req.len {
                    self.inflight = Some(f);
                    return Ok(());
                }
                done.push((f.req.head, self.finish(&f.req, mem, f.status)?));
            }
            if chains == 0 || bytes == 0 {
                return Ok(());
            }
            let Some(c) = self.waiting.pop_front() else {
                let taken = q.take_some(mem, limit, chains)?;
                if taken.is_empty() {
                    return Ok(());
                }
                self.waiting.extend(taken);
                continue;
            };
            chains -= 1;
            self.begin(&c, mem, usize::from(q.size), done)?;
        }
    }

    /// Takes up one chain: answered at once (its used entry to `done`), parked (at most
    /// `most` at a time), or a read or write begun, moved by [`Blk::advance`].
    fn begin<M: GuestMem + ?Sized>(
        &mut self,
        chain: &Chain,
        mem: &mut M,
        most: usize,
        done: &mut Vec<(u16, u32)>,
    ) -> Result<(), String>
    where
        D: Disk<M>,
    {
        match self.parse(chain, mem)? {
            Step::Now(req, status) => done.push((req.head, self.finish(&req, mem, status)?)),
            Step::Disk(req) if self.disk.deferred() => {
                if self.parked.len() >= most {
                    return Err(format!(
                        "more than {most} requests outstanding (descriptor {} made available again before it was used)",
                        chain.head
                    ));
                }
                self.parked.push_back(req);
            }
            Step::Disk(req) if req.op == Op::Flush => {
                let status = self.execute(&req, mem)?;
                done.push((req.head, self.finish(&req, mem, status)?));
            }
            Step::Disk(req) => {
                self.inflight = Some(InFlight {
                    req,
                    done: 0,
                    status: S_OK,
                })
            }
        }
        Ok(())
    }

    /// Moves the next `n` data bytes of a read or write (a write that fails ends there,
    /// with an I/O error).
    fn advance<M: GuestMem + ?Sized>(
        &mut self,
        f: &mut InFlight,
        mem: &mut M,
        n: u64,
    ) -> Result<(), String>
    where
        D: Disk<M>,
    {
        let (skip, off) = (f.done, f.req.off + f.done);
        match f.req.op {
            Op::In => f.status = self.disk_to_guest(mem, &f.req.wr, skip, off, n, f.status)?,
            Op::Out => {
                if self.guest_to_disk(mem, &f.req.rd, 16 + skip, off, n)? != S_OK {
                    f.status = S_IOERR;
                    f.done = f.req.len;
                    return Ok(());
                }
            }
            Op::Flush => {}
        }
        f.done += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
