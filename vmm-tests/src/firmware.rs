//! Machines unlike the PC/AT with SeaBIOS the harness boots by default, as QEMU arguments
//! for `emu::Opts::qemu_args`: UEFI (Debian's OVMF on q35) and a PC without the PIT.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where Debian's `ovmf` package puts the firmware (code, variables), newest layout first.
const OVMF: [(&str, &str); 2] = [
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
];

/// A UEFI machine: q35 with OVMF's code as read-only flash and a copy of its variable
/// store made for this run (the firmware writes to it). The copy lies in the temporary
/// directory; `Uefi` removes it when dropped.
pub struct Uefi {
    vars: PathBuf,
    pub args: Vec<String>,
}

impl Uefi {
    pub fn new() -> Uefi {
        let (code, vars) = OVMF
            .iter()
            .find(|(c, v)| Path::new(c).exists() && Path::new(v).exists())
            .expect("OVMF firmware (run scripts/setup: Debian's ovmf package)");
        static N: AtomicU32 = AtomicU32::new(0);
        let copy = std::env::temp_dir().join(format!(
            "hv-ovmf-vars-{}-{}.fd",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::copy(vars, &copy).expect("copy OVMF's variable store");
        let args = vec![
            "-machine".into(),
            "q35".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", copy.display()),
        ];
        Uefi { vars: copy, args }
    }
}

impl Default for Uefi {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Uefi {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.vars);
    }
}

/// A PC (i440FX) with the 8254 PIT switched off, as some current boards gate it.
pub fn no_pit() -> Vec<String> {
    ["-machine", "pc,pit=off"].map(String::from).to_vec()
}

/// QEMU's machine protocol on a unix socket of its own (`-qmp unix:PATH,server=on,wait=off`):
/// the harness's `-monitor none` stays, and a test can still read guest memory.
pub struct Qmp {
    pub path: PathBuf,
}

impl Qmp {
    pub fn new() -> Qmp {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "hv-qmp-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Qmp { path }
    }

    /// The QEMU arguments that open the socket.
    pub fn args(&self) -> Vec<String> {
        vec![
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", self.path.display()),
        ]
    }

    /// Sends one command (a JSON object) on a fresh connection; its answer, which must be
    /// a "return".
    fn execute(&self, cmd: &str) -> String {
        use std::io::{BufRead, BufReader, Write};
        let s = std::os::unix::net::UnixStream::connect(&self.path).expect("connect to QMP");
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .ok();
        let mut r = BufReader::new(s.try_clone().expect("clone the QMP socket"));
        let mut w = s;
        let mut reply = |cmd: &str| -> String {
            if !cmd.is_empty() {
                w.write_all(cmd.as_bytes()).expect("send to QMP");
                w.write_all(b"\n").expect("send to QMP");
            }
            // Skip asynchronous events; the answer is the next "return" or "error" (or,
            // first of all, the greeting).
            loop {
                let mut line = String::new();
                r.read_line(&mut line).expect("read QMP");
                assert!(!line.is_empty(), "QMP closed");
                if !line.contains("\"event\"") {
                    return line;
                }
            }
        };
        let greeting = reply("");
        assert!(greeting.contains("QMP"), "{greeting}");
        let ok = reply("{\"execute\":\"qmp_capabilities\"}");
        assert!(ok.contains("return"), "{ok}");
        let ok = reply(cmd);
        assert!(ok.contains("\"return\""), "{cmd}: {ok}");
        ok
    }

    /// `len` bytes of guest physical memory at `pa` (QMP `pmemsave` into a file beside the
    /// socket).
    pub fn read_phys(&self, pa: u64, len: usize) -> Vec<u8> {
        let file = self.path.with_extension("mem");
        self.execute(&format!(
            "{{\"execute\":\"pmemsave\",\"arguments\":{{\"val\":{pa},\"size\":{len},\"filename\":\"{}\"}}}}",
            file.display()
        ));
        let bytes = std::fs::read(&file).expect("read the saved memory");
        let _ = std::fs::remove_file(&file);
        bytes
    }

    /// What the display shows (QMP `screendump`, a PPM file beside the socket).
    pub fn screendump(&self) -> Screendump {
        let file = self.path.with_extension("ppm");
        self.execute(&format!(
            "{{\"execute\":\"screendump\",\"arguments\":{{\"filename\":\"{}\"}}}}",
            file.display()
        ));
        let bytes = std::fs::read(&file).expect("read the screendump");
        let _ = std::fs::remove_file(&file);
        Screendump::parse(&bytes).expect("a binary PPM (P6, 8 bits a channel) from screendump")
    }
}

/// A screen's pixels: red, green, blue bytes, row by row.
pub struct Screendump {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Screendump {
    /// A binary PPM: "P6", width, height and 255, each followed by one whitespace byte
    /// (QEMU writes no comments), then the pixels.
    fn parse(ppm: &[u8]) -> Option<Screendump> {
        let mut fields = Vec::new();
        let mut at = 0;
        while fields.len() < 4 {
            let len = ppm[at..].iter().position(|b| b.is_ascii_whitespace())?;
            fields.push(std::str::from_utf8(&ppm[at..at + len]).ok()?);
            at += len + 1;
        }
        let [magic, w, h, max] = fields[..] else {
            return None;
        };
        let (width, height) = (w.parse().ok()?, h.parse().ok()?);
        let rgb = ppm.get(at..at + 3 * width * height)?.to_vec();
        (magic == "P6" && max == "255").then_some(Screendump { width, height, rgb })
    }
}

impl Default for Qmp {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
