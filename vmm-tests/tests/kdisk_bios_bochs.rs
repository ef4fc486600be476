//! Firmware on a disk the hypervisor serves: SeaBIOS (`vmx --bios`, through the tool's
//! library) boots the hybrid GRUB ISO of tool_bios_bochs (`fixtures::bootiso`) from the
//! kernel's own virtio-blk (devvmx/DEVIATIONS.md, "Extension: virtio-blk in the kernel"),
//! a queue disk whose blocks the tool serves from the ISO through the VM's `blkq`: SeaBIOS
//! drives the device itself (it places the BAR, sets up the ring, polls the used index),
//! GRUB reads its core and `grub.cfg` through SeaBIOS's disk calls, and its menu appears
//! on COM1. The tool-device version is tool_bios_bochs's (`--no-kernel-disks` there keeps
//! it on the tool's own virtio-blk). Ignored (long): the same ISO through GRUB to Linux's
//! busybox shell, which answers 54.
//!
//! `cargo test -p vmm-tests --release --test kdisk_bios_bochs -- [--ignored] --nocapture`

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::fixtures::{bootiso, run_options, scratch, Capture};
use vmx::layout::Layout;
use vmx::session::{self, Options};

/// SeaBIOS run by the tool on a thread, the ISO on the kernel's queue disk; the run goes
/// on until Bochs ends with `m`.
struct Boot {
    m: Machine,
    out: Capture,
    log: Capture,
    keys: UnixStream,
    run: JoinHandle<Result<String, String>>,
    start: Instant,
    dir: std::path::PathBuf,
}

impl Boot {
    fn start(mem: u64) -> Boot {
        let bios = vmx::firmware::DEFAULT_BIOS;
        let rom = std::fs::read(bios)
            .unwrap_or_else(|e| panic!("{bios}: {e} (scripts/setup installs Debian's seabios)"));
        vmx::firmware::check_rom(&rom).unwrap();
        let layout = Layout::new(mem)
            .unwrap()
            .with_rom(rom.len() as u64)
            .unwrap();
        let img = vmx::firmware::load(&rom, &layout).unwrap();
        let fwcfg = vmx::firmware::fw_cfg(&layout, None).unwrap();
        let dir = scratch("vmx-kdisk-bios");
        let iso = bootiso::grub_iso(&dir);
        let m = Machine::vtx(Opts {
            virtio_ports: 0,
            ..Opts::default()
        });
        let client = m.client_msize(&m.uart_path(), "eve", "", ninep_client::DEFAULT_MSIZE);
        client.set_timeout(None);
        let (out, log) = (Capture::default(), Capture::default());
        let spec = vmx::kdisk::Spec::parse(&iso.display().to_string());
        let (keys, input) = UnixStream::pair().unwrap();
        let start = Instant::now();
        let run = std::thread::spawn({
            let (out, log) = (out.clone(), log.clone());
            move || {
                let devices = session::Devices {
                    kdisks: vec![spec],
                    fwcfg: Some(fwcfg),
                    ..Default::default()
                };
                let opts = Options {
                    input: Some(Box::new(input)),
                    ..run_options("kbios", out, log, true, devices)
                };
                session::run(client, &layout, &img, opts).map(|r| r.stats.report())
            }
        });
        Boot {
            m,
            out,
            log,
            keys,
            run,
            start,
            dir,
        }
    }

    /// Waits until the console holds every one of `want`.
    fn expect(&self, want: &[&str], limit: Duration) {
        loop {
            let text = self.out.text();
            if want.iter().all(|w| text.contains(w)) {
                return;
            }
            assert!(
                !self.run.is_finished(),
                "the run ended before {want:?}:\n{text}\n{}",
                self.log.text()
            );
            assert!(
                self.start.elapsed() < limit,
                "no {want:?} in {limit:?}:\n{text}\n{}\n{}",
                self.log.text(),
                self.m.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The log says the disk was the kernel's, served through blkq.
    fn served_by_the_kernel(&self) -> String {
        let log = self.log.text();
        assert!(
            log.contains("served here through the VM's blkq (in-kernel virtio-blk)"),
            "{log}"
        );
        log
    }
}

#[test]
fn grub_menu_from_an_iso_on_the_kernels_disk_under_bochs() {
    let b = Boot::start(128 << 20);
    b.expect(
        &[
            "SeaBIOS (version",
            "Booting from Hard Disk",
            bootiso::MENU_ENTRY,
        ],
        Duration::from_secs(900),
    );
    let log = b.served_by_the_kernel();
    eprintln!(
        "--- SeaBIOS, the ISO on the kernel's disk to GRUB's menu after {:?} ---\n{}\n--- log ---\n{log}",
        b.start.elapsed(),
        b.out.text()
    );
    let _ = std::fs::remove_dir_all(&b.dir);
}

/// The whole way on the kernel's disk: SeaBIOS, GRUB, Debian's kernel and initramfs read
/// from the ISO through the queue file, the busybox shell answering 54.
/// `cargo test -p vmm-tests --release --test kdisk_bios_bochs -- --ignored --nocapture`
#[test]
#[ignore = "a full Linux boot through SeaBIOS and GRUB under Bochs takes minutes"]
fn iso_on_the_kernels_disk_boots_linux_to_a_shell_under_bochs() {
    let mut b = Boot::start(128 << 20);
    b.expect(&[bootiso::MENU_ENTRY], Duration::from_secs(900));
    let grub = b.start.elapsed();
    b.expect(&[bootiso::SHELL_BANNER], Duration::from_secs(2400));
    let shell = b.start.elapsed();
    b.keys.write_all(b"echo $((6*9))\n").unwrap();
    b.expect(&["\r\n54\r\n"], Duration::from_secs(2600));
    let log = b.served_by_the_kernel();
    b.keys.write_all(b"poweroff -f\n").unwrap();
    let t = Instant::now();
    while !b.run.is_finished() {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "no end after poweroff"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let stats = b
        .run
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{log}"));
    eprintln!(
        "--- the ISO on the kernel's disk to a shell ---\n{}\n--- GRUB's menu after {grub:?}, the shell after {shell:?} ---\n{log}\n{stats}",
        b.out.text()
    );
    let _ = std::fs::remove_dir_all(&b.dir);
}
