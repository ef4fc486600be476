//! What the exit loop needs from the hypervisor: one VM's files and its memory segment.
//! [`NinepVm`] is the real thing over 9P; tests use a fake.

use crate::pipe;
use ninep_client::{dm, om, Client, File, PendingWrite};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

/// One VM on the hypervisor. Errors are the server's error strings (or the transport's).
pub trait Vmfs {
    /// One write to the VM's ctl file.
    fn ctl(&mut self, cmd: &str) -> Result<(), String>;
    /// The whole regs file.
    fn read_regs(&mut self) -> Result<String, String>;
    fn write_regs(&mut self, text: &str) -> Result<(), String>;
    /// Guest-physical memory (the segment's data at the same offsets).
    fn read_mem(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String>;
    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), String>;
    /// Writes `pieces` (address, bytes) of guest memory, with several writes in flight
    /// where the transport allows, calling `sent` with each piece's length once it has
    /// gone out. By default one [`Vmfs::write_mem`] after another.
    fn write_mem_all(
        &mut self,
        pieces: &[(u64, Vec<u8>)],
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), String> {
        for (addr, data) in pieces {
            self.write_mem(*addr, data)
                .map_err(|e| format!("writing guest memory at {addr:#x}: {e}"))?;
            sent(data.len() as u64);
        }
        Ok(())
    }
    /// 9P requests made so far through this handle (not counting wait reads).
    fn round_trips(&self) -> u64;
    /// Bytes for the in-kernel UART (the VM's `cons`), when the VM has one.
    fn write_cons(&mut self, _data: &[u8]) -> Result<(), String> {
        Err("no in-kernel console".into())
    }
    /// A ctl write whose reply the caller does not wait for: it travels with whatever
    /// is sent next (the `wait` read already in flight), and an error comes back later
    /// (see [`NinepVm::pipeline`]). By default, a plain [`Vmfs::ctl`].
    fn ctl_nowait(&mut self, cmd: &str) -> Result<(), String> {
        self.ctl(cmd)
    }
    /// Of [`Vmfs::round_trips`], those the caller waited for.
    fn blocking_trips(&self) -> u64 {
        self.round_trips()
    }
}

/// Counts requests; shared with the wait reader thread.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// A new counter starting at this one's value.
    pub fn clone_value(&self) -> Counter {
        Counter(Arc::new(AtomicU64::new(self.get())))
    }
}

fn e(err: ninep_client::Error) -> String {
    err.to_string()
}

/// A VM made through the hypervisor's 9P service, as vmx(1) makes one on #X: a segment
/// for its memory, its `ctl` kept open ORCLOSE for the run (a server that removes a
/// segment when such a fid is clunked frees the memory however the tool ends),
/// `vmx/clone` opened ORDWR|ORCLOSE (closing it ends the VM), then its regs, map and
/// wait files.
pub struct NinepVm {
    pub client: Client,
    /// segment/NAME/ctl, open ORCLOSE.
    sctl: File,
    /// vmx/N/ctl (the clone file).
    ctl: File,
    regs: File,
    data: File,
    /// vmx/N/cons, once in-kernel devices are on.
    cons: Option<File>,
    /// The VM's number N.
    pub id: String,
    pub segment: String,
    pub trips: Counter,
    /// Requests waited for (the rest are pipelined ctl writes).
    pub blocking: Counter,
    /// Where pipelined ctl writes go to have their replies collected.
    pipe: Option<Sender<(String, PendingWrite)>>,
}

impl NinepVm {
    /// Creates segment `segment` of `size` bytes and a VM whose `map` is `map_text`.
    pub fn create(
        client: Client,
        segment: &str,
        size: u64,
        map_text: &str,
    ) -> Result<NinepVm, String> {
        let trips = Counter::default();
        let seg = client
            .create("segment", segment, dm::DIR | 0o777, om::READ)
            .map_err(|x| format!("create segment/{segment}: {x}"))?;
        drop(seg);
        let sctl = client
            .open(
                &format!("segment/{segment}/ctl"),
                om::WRITE | om::TRUNC | om::RCLOSE,
            )
            .map_err(|x| format!("open segment/{segment}/ctl: {x}"))?;
        sctl.write_str(&format!("va {:#x} {size:#x} sticky", 0x1000_0000u64))
            .map_err(|x| format!("segment/{segment}/ctl: {x}"))?;
        let data = client
            .open(&format!("segment/{segment}/data"), om::RDWR)
            .map_err(|x| format!("open segment/{segment}/data: {x}"))?;
        let ctl = client
            .open("vmx/clone", om::RDWR | om::RCLOSE)
            .map_err(|x| format!("open vmx/clone: {x}"))?;
        let id = String::from_utf8_lossy(
            &ctl.read_at(0, 64)
                .map_err(|x| format!("read vmx/clone: {x}"))?,
        )
        .trim()
        .to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("vmx/clone gave {id:?}, not a VM number"));
        }
        let regs = client
            .open(&format!("vmx/{id}/regs"), om::RDWR)
            .map_err(|x| format!("open vmx/{id}/regs: {x}"))?;
        let map = client
            .open(&format!("vmx/{id}/map"), om::WRITE | om::TRUNC)
            .map_err(|x| format!("open vmx/{id}/map: {x}"))?;
        map.write_str(map_text)
            .map_err(|x| format!("vmx/{id}/map: {x}"))?;
        drop(map);
        trips.add(14);
        let blocking = trips.clone_value();
        Ok(NinepVm {
            client,
            sctl,
            ctl,
            regs,
            data,
            cons: None,
            id,
            segment: segment.to_string(),
            trips,
            blocking,
            pipe: None,
        })
    }

    /// A ctl message of one of the hypervisor's extensions (devvmx/DEVIATIONS.md):
    /// Ok(false) when it has no such message (9front's #X).
    fn extension(&mut self, msg: &str) -> Result<bool, String> {
        self.trip();
        match self.ctl.write_str(msg) {
            Ok(_) => Ok(true),
            Err(x)
                if x.remote()
                    .is_some_and(|r| r.starts_with("unknown control message")) =>
            {
                Ok(false)
            }
            Err(x) => Err(format!("vmx/{}/ctl {msg}: {x}", self.id)),
        }
    }

    /// Asks for the guest's clock on every exit line (`clock` on ctl), for the devices
    /// here ([`crate::dev::clock`]). Ok(false) when the hypervisor has no such message.
    pub fn guest_clock(&mut self) -> Result<bool, String> {
        self.extension("clock")
    }

    /// Asks the hypervisor to run these PC devices itself (`devices ...` on ctl) and
    /// opens the console of its UART. Ok(false) when the hypervisor has no such message.
    pub fn kernel_devices(&mut self, msg: &str) -> Result<bool, String> {
        if !self.extension(msg)? {
            return Ok(false);
        }
        self.trip();
        let cons = self
            .client
            .open(&format!("vmx/{}/cons", self.id), om::RDWR)
            .map_err(|x| format!("open vmx/{}/cons: {x}", self.id))?;
        self.cons = Some(cons);
        Ok(true)
    }

    /// A second handle on the console, for the reader thread.
    pub fn open_cons(&self) -> Result<File, String> {
        self.client
            .open(&format!("vmx/{}/cons", self.id), om::READ)
            .map_err(|x| format!("open vmx/{}/cons: {x}", self.id))
    }

    /// Turns on pipelined ctl writes ([`Vmfs::ctl_nowait`]): a thread collects their
    /// replies in order and hands any error to `on_error` (which should end the run: a
    /// failed `go` means no exit will come).
    pub fn pipeline(&mut self, on_error: Box<dyn Fn(String) + Send>) {
        let (tx, rx) = channel::<(String, PendingWrite)>();
        std::thread::spawn(move || {
            for (cmd, w) in rx {
                match w.wait() {
                    Ok(n) if n == cmd.len() => {}
                    Ok(n) => on_error(format!("ctl {cmd}: short write: {n} of {}", cmd.len())),
                    Err(x) => on_error(format!("ctl {cmd}: {x}")),
                }
            }
        });
        self.pipe = Some(tx);
    }

    /// Opens the VM's wait file (for the reader thread).
    pub fn open_wait(&self) -> Result<File, String> {
        self.client
            .open(&format!("vmx/{}/wait", self.id), om::READ)
            .map_err(|x| format!("open vmx/{}/wait: {x}", self.id))
    }

    /// Ends the VM (clunking the ORCLOSE ctl fid) and removes the segment (clunking its
    /// ORCLOSE ctl, then removing it by name where the server did not).
    pub fn close(self) -> Result<(), String> {
        let NinepVm {
            client,
            sctl,
            ctl,
            regs,
            data,
            cons,
            segment,
            ..
        } = self;
        drop(regs);
        drop(data);
        drop(cons);
        ctl.clunk().map_err(e)?;
        sctl.clunk().map_err(e)?;
        match client.remove(&format!("segment/{segment}")) {
            Err(x) if x.remote() == Some("file does not exist") => Ok(()),
            r => r.map_err(|x| format!("remove segment/{segment}: {x}")),
        }
    }

    fn io_limit(&self) -> usize {
        pipe::io_limit(&self.client, &self.data)
    }
}

impl NinepVm {
    /// Counts one request the caller waits for.
    fn trip(&self) {
        self.trips.add(1);
        self.blocking.add(1);
    }
}

impl Vmfs for NinepVm {
    fn ctl(&mut self, cmd: &str) -> Result<(), String> {
        self.trip();
        self.ctl.write_str(cmd).map_err(e)
    }

    fn ctl_nowait(&mut self, cmd: &str) -> Result<(), String> {
        let Some(pipe) = &self.pipe else {
            return self.ctl(cmd);
        };
        self.trips.add(1);
        let w = self
            .client
            .start_write(&self.ctl, 0, cmd.as_bytes())
            .map_err(e)?;
        pipe.send((cmd.to_string(), w))
            .map_err(|_| "the ctl reply collector ended".to_string())
    }

    fn blocking_trips(&self) -> u64 {
        self.blocking.get()
    }

    fn read_regs(&mut self) -> Result<String, String> {
        // One read of the whole file, as vmx(1) does (about 2.5 KB of text).
        self.trip();
        let b = self.regs.read_at(0, self.client.max_io()).map_err(e)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn write_regs(&mut self, text: &str) -> Result<(), String> {
        self.trip();
        self.regs.write_str(text).map_err(e)
    }

    fn read_mem(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = (len - out.len()).min(self.io_limit());
            self.trip();
            let b = self
                .data
                .read_at(addr + out.len() as u64, n as u32)
                .map_err(e)?;
            if b.is_empty() {
                return Err(format!(
                    "read of guest memory at {:#x}: end of segment",
                    addr + out.len() as u64
                ));
            }
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(self.io_limit());
            self.trip();
            let w = self
                .data
                .write_at(addr + done as u64, &data[done..done + n])
                .map_err(e)?;
            if w == 0 {
                return Err(format!(
                    "write of guest memory at {:#x}: nothing written",
                    addr + done as u64
                ));
            }
            done += w;
        }
        Ok(())
    }

    fn write_mem_all(
        &mut self,
        pieces: &[(u64, Vec<u8>)],
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), String> {
        let mut w = pipe::Writer::new(&self.client, &self.data);
        let r = pieces.iter().try_for_each(|(addr, data)| {
            w.write(*addr, data)
                .map(|()| sent(data.len() as u64))
                .map_err(|e| format!("writing guest memory: {e}"))
        });
        let t = w.finish().map_err(|e| format!("writing guest memory: {e}"));
        let t = r.and(t)?;
        self.trips.add(t.sent);
        self.blocking.add(t.latency_bound);
        Ok(())
    }

    fn round_trips(&self) -> u64 {
        self.trips.get()
    }

    fn write_cons(&mut self, mut data: &[u8]) -> Result<(), String> {
        let cons = self.cons.as_ref().ok_or("no in-kernel console")?;
        while !data.is_empty() {
            self.trip();
            let n = cons.write_at(0, data).map_err(e)?;
            if n == 0 {
                return Err("console took nothing".into());
            }
            data = &data[n.min(data.len())..];
        }
        Ok(())
    }
}
