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
