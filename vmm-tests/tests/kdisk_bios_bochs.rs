//! Firmware on a disk the hypervisor serves: SeaBIOS (`vmx --bios`, through the tool's
//! library) boots the hybrid GRUB ISO of tool_bios_bochs (`fixtures::bootiso`) from the
//! kernel's own virtio-blk (devvmx/DEVIATIONS.md, "Extension: virtio-blk in the kernel"),
//! a queue disk whose blocks the tool serves from the ISO through the VM's `blkq`: SeaBIOS
//! drives the device itself (it places the BAR, sets up the ring, polls the used index),
//! GRUB reads its core and `grub.cfg` through SeaBIOS's disk calls, and its menu appears
//! on COM1. The tool-device version is tool_bios_bochs's (`--no-kernel-disks` there keeps
//! it on the tool's own virtio-blk).
//!
//! `cargo test -p vmm-tests --release --test kdisk_bios_bochs -- --nocapture`

use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::fixtures::{bootiso, Capture};
use vmx::layout::Layout;
use vmx::session::{self, Options};

#[test]
fn grub_menu_from_an_iso_on_the_kernels_disk_under_bochs() {
    let bios = vmx::firmware::DEFAULT_BIOS;
    let rom = std::fs::read(bios)
        .unwrap_or_else(|e| panic!("{bios}: {e} (scripts/setup installs Debian's seabios)"));
    vmx::firmware::check_rom(&rom).unwrap();
    let layout = Layout::new(128 << 20)
        .unwrap()
        .with_rom(rom.len() as u64)
        .unwrap();
    let img = vmx::firmware::load(&rom, &layout).unwrap();
    let fwcfg = vmx::firmware::fw_cfg(&layout).unwrap();
    let dir = std::env::temp_dir().join(format!("vmx-kdisk-bios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let iso = bootiso::grub_iso(&dir);

    let m = Machine::vtx(Opts {
        virtio_ports: 0,
        ..Opts::default()
    });
    let client = m.client_msize(&m.uart_path(), "eve", "", ninep_client::DEFAULT_MSIZE);
    client.set_timeout(None);
    let (out, log) = (Capture::default(), Capture::default());
    let spec = vmx::kdisk::Spec::parse(&iso.display().to_string());
    let start = Instant::now();
    // The run goes on (GRUB boots Linux after its timeout) until Bochs ends with `m`.
    let run = std::thread::spawn({
        let (out, log) = (out.clone(), log.clone());
        move || {
            let opts = Options {
                segment: "kbios".into(),
                out: Box::new(out),
                input: None,
                log: Box::new(log),
                tty: false,
                debug: false,
                trace: None,
                kernel_devices: true,
                pipeline: true,
                devices: session::Devices {
                    kdisks: vec![spec],
                    fwcfg: Some(fwcfg),
                    ..Default::default()
                },
            };
            session::run(client, &layout, &img, opts).map(|_| ())
        }
    });
    let want = [
        "SeaBIOS (version",
        "Booting from Hard Disk",
        bootiso::MENU_ENTRY,
    ];
    loop {
        let text = out.text();
        if want.iter().all(|w| text.contains(w)) {
            break;
        }
        assert!(
            !run.is_finished(),
            "the run ended before GRUB's menu:\n{text}\n{}",
            log.text()
        );
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "no GRUB menu in 900 s:\n{text}\n{}\n{}",
            log.text(),
            m.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = log.text();
    assert!(
        log.contains("served here through the VM's blkq (in-kernel virtio-blk)"),
        "{log}"
    );
    eprintln!(
        "--- SeaBIOS, the ISO on the kernel's disk to GRUB's menu after {:?} ---\n{}\n--- log ---\n{log}",
        start.elapsed(),
        out.text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
