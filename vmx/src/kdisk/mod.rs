//! `-d` disks the hypervisor serves (devvmx/DEVIATIONS.md, "Extension: virtio-blk in the
//! kernel"): a queue disk (`pci blk queue`) whose requests the tool serves on the image
//! file through the VM's `blkq` ([`queue`], one read always in flight), or a segment
//! disk (`-d seg:FILE`, `pci blk seg`): the image uploaded into a segment of its own,
//! the guest's disk I/O never leaving the hypervisor, and the pages it changed
//! (`blkdirty`) written back to the file at the end, the segment removed after. Where
//! the hypervisor has no such disks (9front's #X, an older kernel) the same specs
//! become the tool's own virtio-blk ([`Spec::tool_disk`]).

pub mod queue;

use crate::pipe::{self, Trips};
use crate::upload::human;
use crate::virtio::blk::{Backend, Blk, FileDisk};
use crate::vmfs::{NinepVm, Vmfs};
use ninep_client::{dm, om, Client, File, BULK_IO};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// Their rows in the run's statistics ([`crate::run::Stats`]).
pub const LOAD: &str = "(disk load)";
pub const QUEUE: &str = "(blkq)";
pub const SAVE: &str = "(disk save)";

const PAGE: u64 = 4096;
const SECTOR: u64 = 512;

/// A `-d [ro:][seg:]FILE` disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub path: PathBuf,
    pub ro: bool,
    /// In a segment in the hypervisor's memory, written back at the end.
    pub seg: bool,
}

impl Spec {
    /// `[ro:][seg:]FILE` (the prefixes in either order).
    pub fn parse(s: &str) -> Spec {
        let (mut ro, mut seg, mut rest) = (false, false, s);
        loop {
            if let Some(r) = rest.strip_prefix("ro:") {
                (ro, rest) = (true, r);
            } else if let Some(r) = rest.strip_prefix("seg:") {
                (seg, rest) = (true, r);
            } else {
                break;
            }
        }
        Spec {
            path: PathBuf::from(rest),
            ro,
            seg,
        }
    }

    /// The image file, opened as the disk will use it; one line when it cannot be.
    pub fn open(&self) -> Result<FileDisk, String> {
        let d = FileDisk::open(&self.path, self.ro).map_err(|e| format!("-d {e}"))?;
        if d.size() < SECTOR {
            return Err(format!(
                "-d {}: {} bytes, less than one 512-byte sector",
                self.path.display(),
                d.size()
            ));
        }
        Ok(d)
    }

    /// The disk's name for GET_ID: the file's name.
    fn id(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// The same disk as the tool's own virtio-blk (a hypervisor without in-kernel
    /// disks; a segment disk is then served from the file directly).
    pub fn tool_disk(&self) -> Result<Blk, String> {
        Ok(Blk::new(Box::new(self.open()?), self.ro, &self.id()))
    }

    fn ro_word(&self) -> &'static str {
        if self.ro {
            " ro"
        } else {
            ""
        }
    }
}

/// A name no segment has: the probe's (`pci blk seg` of it answers "no such segment"
/// where the hypervisor has in-kernel disks).
const PROBE: &str = "vmx-probe-no-such-segment";

/// Whether the hypervisor serves disks itself: asks for a disk on a segment that does
/// not exist, which a hypervisor with the extension refuses as such, and one without it
/// as a bad argument (an older kernel with `pci`) or an unknown message. Needs the
/// in-kernel PCI bus.
pub fn probe(vm: &mut dyn Vmfs) -> bool {
    matches!(vm.ctl(&format!("pci blk seg {PROBE}")), Err(e) if e.ends_with("no such segment"))
}

/// A segment disk's segment, kept for the write-back.
struct SegDisk {
    spec: Spec,
    /// The kernel's disk number.
    n: usize,
    name: String,
    /// segment/NAME/ctl, open ORCLOSE: the segment goes when the tool does.
    ctl: File,
    data: File,
    /// The image's length (the segment is padded to a page).
    len: u64,
}

/// A bulk transfer's cost: round trips, of them those whose latency it paid (pipelined
/// messages ride behind one: [`pipe::Trips`]), and bytes moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub trips: u64,
    pub latency_bound: u64,
    pub bytes: u64,
}

impl Transfer {
    fn add(&mut self, trips: u64, latency_bound: u64, bytes: u64) {
        self.trips += trips;
        self.latency_bound += latency_bound;
        self.bytes += bytes;
    }
}

/// What the in-kernel disks cost, for --stats.
#[derive(Clone, Debug, Default)]
pub struct Costs {
    /// Uploads of segment disks.
    pub load: Transfer,
    /// Queue disks: requests served, round trips (reads and writes of `blkq`), bytes
    /// moved, and batches (each one round trip of latency: [`queue::Tally`]).
    pub queue: (u64, u64, u64, u64),
    /// Write-backs of segment disks (bytes: those written to the files).
    pub save: Transfer,
}

/// A VM's in-kernel disks.
pub struct KDisks {
    segs: Vec<SegDisk>,
    /// The queue server's end, and its tally.
    server: Option<(Receiver<Result<(), String>>, queue::Tally)>,
    pub costs: Costs,
}

/// Creates segment `name` of `len` bytes (a page multiple): its ORCLOSE ctl and data.
fn make_segment(client: &Client, name: &str, len: u64) -> Result<(File, File), String> {
    drop(
        client
            .create("segment", name, dm::DIR | 0o777, om::READ)
            .map_err(|x| format!("create segment/{name}: {x}"))?,
    );
    let ctl = client
        .open(
            &format!("segment/{name}/ctl"),
            om::WRITE | om::TRUNC | om::RCLOSE,
        )
        .map_err(|x| format!("open segment/{name}/ctl: {x}"))?;
    let data = ctl
        .write_str(&format!("va {:#x} {len:#x} sticky", 0x1000_0000u64))
        .map_err(|x| {
            format!(
                "a segment of {} in the hypervisor's memory: {x} (its status file's memfree says how much it has)",
                human(len as f64)
            )
        })
        .and_then(|()| {
            client
                .open(&format!("segment/{name}/data"), om::RDWR)
                .map_err(|x| format!("open segment/{name}/data: {x}"))
        });
    match data {
        Ok(d) => Ok((ctl, d)),
        Err(e) => {
            let _ = ctl.clunk();
            let _ = client.remove(&format!("segment/{name}"));
            Err(e)
        }
    }
}

/// Sends the file behind `spec` into `data` with several writes in flight (each the
/// most `data` takes): only the runs of pages that hold something (a fresh segment
/// reads as zeros). What the writes cost and the bytes sent.
fn upload(spec: &Spec, client: &Client, data: &File) -> Result<(Trips, u64), String> {
    let name = spec.path.display();
    let mut f = std::fs::File::open(&spec.path).map_err(|e| format!("-d {name}: {e}"))?;
    let mut buf = vec![0u8; (BULK_IO as usize).max(PAGE as usize)];
    let mut w = pipe::Writer::new(client, data);
    let (mut off, mut sent) = (0u64, 0u64);
    loop {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(format!("-d {name}: {e}")),
            }
        }
        if n == 0 {
            let trips = w
                .finish()
                .map_err(|e| format!("-d {name}: uploading: {e}"))?;
            return Ok((trips, sent));
        }
        // Runs of non-zero pages, each one write (or more, past what a write takes).
        let page = PAGE as usize;
        let mut p = 0;
        while p < n {
            let blank = |p: usize| buf[p..(p + page).min(n)].iter().all(|&b| b == 0);
            if blank(p) {
                p += page;
                continue;
            }
            let start = p;
            while p < n && !blank(p) {
                p += page;
            }
            let run = &buf[start..p.min(n)];
            w.write(off + start as u64, run)
                .map_err(|e| format!("-d {name}: uploading: {e}"))?;
            sent += run.len() as u64;
        }
        off += n as u64;
    }
}

/// `N OFFSET LENGTH` lines of `blkdirty` (hex offsets and lengths).
pub fn parse_dirty(text: &str) -> Vec<(usize, u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [n, off, len] = f[..] else { return None };
            Some((n.parse().ok()?, hex(off)?, hex(len)?))
        })
        .collect()
}

impl KDisks {
    /// Puts `specs` on the VM's in-kernel PCI bus, in order (disk N is `specs[N]`):
    /// segment disks uploaded first (into segments named after the VM's), then the
    /// queue server started for the rest. Progress lines go to `log`.
    pub fn attach(
        vm: &mut NinepVm,
        specs: Vec<Spec>,
        log: &mut dyn Write,
    ) -> Result<KDisks, String> {
        let mut k = KDisks {
            segs: Vec::new(),
            server: None,
            costs: Costs::default(),
        };
        let mut files: Vec<Option<FileDisk>> = Vec::new();
        let client = vm.client.clone();
        for (n, spec) in specs.into_iter().enumerate() {
            let disk = spec.open()?;
            let len = disk.size();
            if spec.seg {
                let size = len.div_ceil(PAGE) * PAGE;
                let name = format!("{}.d{n}", vm.segment);
                let (ctl, data) = make_segment(&client, &name, size)
                    .map_err(|e| format!("-d {}: {e}", spec.path.display()))?;
                let seg = SegDisk {
                    spec: spec.clone(),
                    n,
                    name: name.clone(),
                    ctl,
                    data,
                    len,
                };
                let (trips, sent) = upload(&spec, &client, &seg.data)?;
                // And the segment's create, opens and ctl write, each waited for.
                k.costs
                    .load
                    .add(trips.sent + 4, trips.latency_bound + 4, sent);
                k.segs.push(seg);
                let _ = writeln!(
                    log,
                    "vmx: -d {}: {} in segment {name} (in-kernel virtio-blk), {} sent",
                    spec.path.display(),
                    human(len as f64),
                    human(sent as f64)
                );
                vm.ctl(&format!("pci blk seg {name}{}", spec.ro_word()))
                    .map_err(|e| format!("-d {}: pci blk seg: {e}", spec.path.display()))?;
                files.push(None);
            } else {
                let bytes = len / SECTOR * SECTOR;
                vm.ctl(&format!("pci blk queue {bytes}{}", spec.ro_word()))
                    .map_err(|e| format!("-d {}: pci blk queue: {e}", spec.path.display()))?;
                let _ = writeln!(
                    log,
                    "vmx: -d {}: {} served here through the VM's blkq (in-kernel virtio-blk)",
                    spec.path.display(),
                    human(bytes as f64)
                );
                files.push(Some(disk));
            }
        }
        if files.iter().any(Option::is_some) {
            let path = format!("vmx/{}/blkq", vm.id);
            let open = |m| {
                client
                    .open(&path, m)
                    .map_err(|x| format!("open {path}: {x}"))
            };
            let (rd, wr) = (open(om::READ)?, open(om::WRITE)?);
            let tally = queue::Tally::default();
            let (tx, rx) = channel();
            std::thread::spawn({
                let tally = tally.clone();
                move || {
                    let _ = tx.send(queue::run(rd, wr, files, tally));
                }
            });
            k.server = Some((rx, tally));
        }
        Ok(k)
    }

    /// The number of disks attached as segment disks.
    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    /// After the run, the VM stopped but not ended: the changed pages of each segment
    /// disk written back to its file. Errors name the file.
    pub fn write_back(&mut self, vm: &NinepVm) -> Result<(), String> {
        if self.segs.iter().all(|s| s.spec.ro) {
            return Ok(());
        }
        let path = format!("vmx/{}/blkdirty", vm.id);
        let text = vm
            .client
            .open(&path, om::READ)
            .and_then(|f| f.read_all())
            .map_err(|x| format!("read {path}: {x}"))?;
        self.costs.save.add(3, 3, 0);
        let dirty = parse_dirty(&String::from_utf8_lossy(&text));
        for s in self.segs.iter().filter(|s| !s.spec.ro) {
            // The padding past the image's end is not the file's.
            let ranges: Vec<(u64, u64)> = dirty
                .iter()
                .filter(|d| d.0 == s.n)
                .map(|&(_, off, len)| (off, (off + len).min(s.len)))
                .filter(|&(off, end)| off < end)
                .map(|(off, end)| (off, end - off))
                .collect();
            if ranges.is_empty() {
                continue;
            }
            let back =
                |e: std::io::Error| format!("writing back -d {}: {e}", s.spec.path.display());
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&s.spec.path)
                .map_err(back)?;
            let mut bytes = 0;
            let trips = pipe::read_ranges(&vm.client, &s.data, &ranges, &mut |at, b| {
                bytes += b.len() as u64;
                f.seek(SeekFrom::Start(at))
                    .and_then(|_| f.write_all(b))
                    .map_err(back)
            })
            .map_err(|e| format!("reading segment/{}: {e}", s.name))?;
            self.costs.save.add(trips.sent, trips.latency_bound, bytes);
            f.sync_data().map_err(back)?;
        }
        Ok(())
    }

    /// After the VM ended: the queue server's end (its reads end with the VM) and the
    /// segments removed. The first error, if any.
    pub fn finish(mut self, client: &Client) -> Result<Costs, String> {
        let mut err = None;
        if let Some((rx, tally)) = self.server.take() {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Err(e)) => err = Some(format!("serving blkq: {e}")),
                Ok(Ok(())) => {}
                Err(_) => err = Some("the blkq server did not end with the VM".into()),
            }
            self.costs.queue = (
                tally.requests.load(Ordering::Relaxed),
                tally.trips.get(),
                tally.bytes.load(Ordering::Relaxed),
                tally.batches.load(Ordering::Relaxed),
            );
        }
        for s in self.segs.drain(..) {
            drop(s.data);
            let _ = s.ctl.clunk();
            match client.remove(&format!("segment/{}", s.name)) {
                Err(x) if x.remote() == Some("file does not exist") => {}
                Err(x) => {
                    err.get_or_insert(format!("remove segment/{}: {x}", s.name));
                }
                Ok(()) => {}
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(self.costs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s = Spec::parse("ro:seg:/x/a.img");
        assert_eq!(
            (s.ro, s.seg, s.path),
            (true, true, PathBuf::from("/x/a.img"))
        );
        let s = Spec::parse("seg:ro:b");
        assert_eq!((s.ro, s.seg), (true, true));
        let s = Spec::parse("c:d");
        assert_eq!((s.ro, s.seg, s.path), (false, false, PathBuf::from("c:d")));
    }

    #[test]
    fn dirty_lines() {
        assert_eq!(
            parse_dirty("0 0x1000 0x3000\n1 0x0 0x1000\nbad\n"),
            vec![(0, 0x1000, 0x3000), (1, 0, 0x1000)]
        );
    }

    #[test]
    fn a_missing_or_tiny_image_is_one_line() {
        let e = Spec::parse("seg:/nonexistent/x.img").open().err().unwrap();
        assert!(e.starts_with("-d /nonexistent/x.img: "), "{e}");
        let path = std::env::temp_dir().join(format!("vmx-kdisk-tiny-{}", std::process::id()));
        std::fs::write(&path, [1u8; 100]).unwrap();
        let e = Spec::parse(path.to_str().unwrap()).open().err().unwrap();
        assert!(e.ends_with("less than one 512-byte sector"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
