//! The reader of the in-kernel UART's console (the VM's `cons`), on its own thread. One
//! read is kept in flight: the hypervisor answers it when the output is due (a batch, or
//! the guest gone idle), and a stop for the client does not end it, so the console
//! costs a round trip per batch, not one per exit. A read sent while the VM is stopped
//! answers at once, empty when all the output up to the stop has been read: the reader
//! then waits for the next launch. Asked to drain (the run ends), it reads through its
//! second handle, which has no read waiting, until that comes back empty.

use crate::run::Event;
use ninep_client::{File, Pending};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

/// Bytes asked for per read.
const READ: u32 = 8192;

/// How often the reader looks for a command while its read waits.
const POLL: Duration = Duration::from_millis(20);

/// What the exit loop tells the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// The guest runs again (a `go` was sent).
    Launched,
    /// The VM has stopped for good: send everything up to the stop, then
    /// [`Event::ConsIdle`].
    Drain,
}

/// Starts the reader on `cons` (its reads wait) and `fresh` (for draining): output goes
/// to `tx` as [`Event::Cons`]; an empty read as [`Event::ConsIdle`] with the launches
/// seen before it was sent.
pub fn spawn(cons: File, fresh: File, tx: Sender<Event>) -> Sender<Cmd> {
    let (cmd, cmds) = channel::<Cmd>();
    std::thread::spawn(move || {
        let mut r = Reader {
            cons,
            fresh,
            tx,
            seen: 0,
            ready: false,
            read: None,
        };
        let _ = r.run(&cmds);
    });
    cmd
}

struct Reader {
    cons: File,
    fresh: File,
    tx: Sender<Event>,
    /// Launches signalled so far.
    seen: u64,
    /// Whether to keep a read in flight: not before the first launch, nor after an empty
    /// read until the next.
    ready: bool,
    /// The read in flight, and the launches seen when it was sent.
    read: Option<(Pending, u64)>,
}

/// The run is over (or the loop has gone): stop reading.
struct Gone;

impl Reader {
    fn send(&self, e: Event) -> Result<(), Gone> {
        self.tx.send(e).map_err(|_| Gone)
    }

    fn command(&mut self, c: Cmd) -> Result<(), Gone> {
        match c {
            Cmd::Launched => {
                self.seen += 1;
                self.ready = true;
                Ok(())
            }
            Cmd::Drain => self.drain(),
        }
    }

    fn run(&mut self, cmds: &Receiver<Cmd>) -> Result<(), Gone> {
        loop {
            while let Ok(c) = cmds.try_recv() {
                self.command(c)?;
            }
            if self.read.is_none() {
                if !self.ready {
                    let c = cmds.recv().map_err(|_| Gone)?;
                    self.command(c)?;
                    continue;
                }
                let p = self.cons.fid().client().start_read(&self.cons, 0, READ);
                match p {
                    Ok(p) => self.read = Some((p, self.seen)),
                    Err(e) => return self.send(Event::ConsFailed(e.to_string())),
                }
            }
            if let Some((p, _)) = self.read.as_mut() {
                match p.wait_timeout(POLL) {
                    Ok(None) => {}
                    Ok(Some(b)) => self.answered(b)?,
                    Err(e) => return self.send(Event::ConsFailed(e.to_string())),
                }
            }
        }
    }

    /// The read in flight came back with `b`.
    fn answered(&mut self, b: Vec<u8>) -> Result<(), Gone> {
        let Some((_, seen)) = self.read.take() else {
            return Ok(());
        };
        if b.is_empty() {
            // The VM was stopped with everything read: wait for the next launch.
            self.ready = self.seen > seen;
            self.send(Event::ConsIdle(seen))
        } else {
            self.send(Event::Cons(b))
        }
    }

    /// Everything up to the stop, through the handle with no read waiting (which the
    /// stopped VM answers at once). The read in flight was sent before each of these:
    /// whatever it got comes first.
    fn drain(&mut self) -> Result<(), Gone> {
        loop {
            let b = match self.fresh.read_at(0, READ) {
                Ok(b) => b,
                Err(e) => return self.send(Event::ConsFailed(e.to_string())),
            };
            if let Some((p, _)) = self.read.as_mut() {
                match p.wait_timeout(Duration::ZERO) {
                    Ok(None) => {}
                    Ok(Some(b)) => self.answered(b)?,
                    Err(_) => self.read = None,
                }
            }
            if b.is_empty() {
                return self.send(Event::ConsIdle(self.seen));
            }
            self.send(Event::Cons(b))?;
        }
    }
}
