//! Sending a loaded image into the guest's segment: only the pages that hold something
//! (a fresh segment reads as zeros), in pieces, with progress on stderr, since over a
//! serial line a Linux kernel takes minutes.

use crate::loader::Image;
use crate::vmfs::Vmfs;
use std::io::Write;
use std::time::{Duration, Instant};

/// Bytes per piece of the plan: one 9P message at the tool's bulk msize (the transport
/// cuts more at smaller ones, and keeps several in flight: [`crate::pipe`]).
const PIECE: usize = ninep_client::BULK_IO as usize;
const PAGE: u64 = 4096;

/// The (address, bytes) runs of `img` worth sending: its chunks cut at page boundaries
/// with all-zero pages left out, adjacent pieces merged up to [`PIECE`].
pub fn plan(img: &Image) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for c in &img.chunks {
        let mut off = 0usize;
        while off < c.data.len() {
            let addr = c.addr + off as u64;
            let room = (PAGE - addr % PAGE) as usize;
            let end = (off + room).min(c.data.len());
            let piece = &c.data[off..end];
            if piece.iter().any(|&b| b != 0) {
                match out.last_mut() {
                    Some((a, d))
                        if *a + d.len() as u64 == addr && d.len() + piece.len() <= PIECE =>
                    {
                        d.extend_from_slice(piece)
                    }
                    _ => out.push((addr, piece.to_vec())),
                }
            }
            off = end;
        }
    }
    out
}

pub fn human(n: f64) -> String {
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

/// One progress line.
pub fn progress_line(sent: u64, total: u64, elapsed: Duration) -> String {
    let pct = (sent * 100).checked_div(total).unwrap_or(100);
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!(
        "vmx: loading {} of {} ({pct}%), {}/s",
        human(sent as f64),
        human(total as f64),
        human(sent as f64 / secs)
    )
}

/// Writes the plan into guest memory, reporting progress to `log` at most every
/// `every` (with '\r' when `tty`, else as lines), and a final line.
pub fn send(
    vm: &mut dyn Vmfs,
    img: &Image,
    log: &mut dyn Write,
    tty: bool,
    every: Duration,
) -> Result<u64, String> {
    let pieces = plan(img);
    let total: u64 = pieces.iter().map(|p| p.1.len() as u64).sum();
    let start = Instant::now();
    let mut last = start;
    let mut sent = 0u64;
    vm.write_mem_all(&pieces, &mut |n| {
        sent += n;
        if last.elapsed() >= every {
            last = Instant::now();
            let l = progress_line(sent, total, start.elapsed());
            let _ = if tty {
                write!(log, "\r{l}\x1b[K")
            } else {
                writeln!(log, "{l}")
            };
        }
    })?;
    let l = progress_line(sent, total, start.elapsed());
    let _ = if tty {
        writeln!(log, "\r{l}\x1b[K")
    } else {
        writeln!(log, "{l}")
    };
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::Chunk;

    #[test]
    fn plan_skips_zero_pages_and_merges() {
        let mut data = vec![0u8; 5 * 4096];
        data[10] = 1; // page 0 (starts mid-page at 0x1800)
        data[3 * 4096] = 2; // a later page
        let img = Image {
            format: "raw",
            chunks: vec![
                Chunk {
                    addr: 0x1800,
                    data: data.clone(),
                },
                Chunk {
                    addr: 0x100000,
                    data: vec![9; 40000],
                },
            ],
            regs: vec![],
        };
        let p = plan(&img);
        // 0x1800..0x2000 (first page, partial), the page holding offset 3*4096, then the
        // 40000-byte run in one piece (at most PIECE).
        assert_eq!(p[0].0, 0x1800);
        assert_eq!(p[0].1.len(), 0x800);
        let a = 0x1800 + 3 * 4096u64;
        assert_eq!(p[1].0, a & !0xfff);
        assert!(p[1].1.contains(&2));
        let big: usize = p[2..].iter().map(|x| x.1.len()).sum();
        assert_eq!(big, 40000);
        assert!(p[2..]
            .iter()
            .all(|x| x.1.len() <= PIECE && x.1.iter().all(|&b| b == 9)));
        // Everything non-zero is covered, at the right place.
        for (addr, d) in &p {
            for (i, b) in d.iter().enumerate() {
                assert_eq!(img.byte_at(addr + i as u64), Some(*b));
            }
        }
    }

    #[test]
    fn progress_text() {
        let l = progress_line(512 * 1024, 2 * 1024 * 1024, Duration::from_secs(4));
        assert_eq!(l, "vmx: loading 512.0 KiB of 2.0 MiB (25%), 128.0 KiB/s");
    }
}
