//! Firmware in the guest under Bochs: the hypervisor boots from its ISO and serves 9P on
//! COM1, and the tool runs Debian's SeaBIOS (`vmx --bios`) from the reset vector in real
//! mode (unrestricted guest), the PC devices in the hypervisor. SeaBIOS finds QEMU's
//! fw_cfg on the tool's machine, mirrors its screen to COM1 (`etc/sercon-port`) and
//! reports what it boots: its banner and boot messages are asserted on the guest's COM1.
//!
//! Disk images: a hybrid ISO made with `grub-mkrescue` (Debian's kernel, a busybox
//! initramfs, GRUB on the serial console) on the tool's virtio-blk: SeaBIOS boots it and
//! GRUB's menu appears on COM1; the whole way to a shell answering 54 is the ignored
//! (slow) test below. The same for a user's disk image, `vmx/mkroot`'s `boot.img` (GRUB in
//! the MBR, an ext4 partition with the kernel in /boot): GRUB boots its menu entry with no
//! kernel argument to the tool; to the shell, ignored too.
//!
//! A kernel through the firmware, as QEMU's `-kernel`: `vmx --bios -m initrd vmlinuz ARGS`
//! offers the kernel, initrd and command line on fw_cfg with QEMU's option ROM
//! `linuxboot_dma.bin`, which SeaBIOS runs and boots first; Linux's first lines (its
//! version and the command line it was given) arrive on COM1. To the shell: ignored.
//!
//! Bad firmware and bad disks: a file that is not a ROM is refused by the tool before it
//! dials (vmx/tests/cli.rs); a disk with no boot sector makes SeaBIOS say so on the
//! console, and so does it for a truncated ISO whose boot code gives up. After each run
//! the tool (killed once the console said enough, since SeaBIOS retries forever) leaves
//! no VM and no segment on the hypervisor.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::fixtures::{bootiso, images, scratch};

/// The ROM the tests boot (the `seabios` package; scripts/setup installs it).
const BIOS: &str = vmx::firmware::DEFAULT_BIOS;

/// The tool's COM1 (its stdout) as it arrives, and its log.
struct Run {
    child: Child,
    /// COM1's input.
    input: ChildStdin,
    out: Receiver<Vec<u8>>,
    text: String,
    /// Where the next [`Run::expect`] starts looking: past the last text it found.
    seen: usize,
}

impl Run {
    fn start(m: &Machine, args: &[&str]) -> Run {
        let mut child = Command::new(vmm_tests::fixtures::tool::vmx())
            .arg("-a")
            .arg(Machine::dial_string(&m.uart_path()))
            // The tool's own virtio-blk: the kernel's disks under SeaBIOS are
            // kdisk_bios_bochs's.
            .arg("--no-kernel-disks")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run vmx");
        let mut stdout = child.stdout.take().unwrap();
        let input = child.stdin.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut b) {
                if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Run {
            child,
            input,
            out: rx,
            text: String::new(),
            seen: 0,
        }
    }

    /// Waits until the console holds every one of `what`, in order, after what earlier
    /// calls found (so an answer is not found in the boot log before the question);
    /// panics after `timeout` or if the tool ends first.
    fn expect(&mut self, m: &Machine, what: &[&str], timeout: Duration) {
        let start = Instant::now();
        let mut from = self.seen;
        for w in what {
            loop {
                if let Some(i) = self.text[from..].find(w) {
                    from += i + w.len();
                    self.seen = from;
                    break;
                }
                let left = timeout.saturating_sub(start.elapsed());
                match self.out.recv_timeout(left.min(Duration::from_secs(5))) {
                    Ok(b) => self.text.push_str(&String::from_utf8_lossy(&b)),
                    Err(_) if left.is_zero() => panic!(
                        "no {w:?} on the console in {timeout:?}:\n{}\n{}",
                        self.text,
                        m.diagnostics()
                    ),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!(
                        "vmx ended ({:?}) before {w:?}:\n{}\n{}",
                        self.child.try_wait(),
                        self.text,
                        m.diagnostics()
                    ),
                    Err(_) => {}
                }
            }
        }
    }

    /// Types `line` on COM1.
    fn type_line(&mut self, line: &str) {
        self.input
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to vmx's COM1");
    }

    /// Waits for the shell's `prompt` (every one of it), types `echo $((6*9))` and waits
    /// for the answer.
    fn shell_answers_54(&mut self, m: &Machine, prompt: &[&str]) {
        self.expect(m, prompt, Duration::from_secs(1800));
        self.type_line("echo $((6*9))");
        self.expect(m, &["54"], Duration::from_secs(120));
    }

    /// Ends the tool (SeaBIOS waits and retries the boot forever), prints its console
    /// under `heading` and above `timings`, if any, and checks that it left nothing on
    /// the hypervisor.
    fn end(mut self, m: &Machine, heading: &str, timings: Option<String>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = self.text;
        match timings {
            Some(t) => eprintln!("--- {heading} ---\n{text}\n--- {t} ---"),
            None => eprintln!("--- {heading} ---\n{text}"),
        }
        nothing_left(m);
    }
}

/// The hypervisor the tool dials on its COM1.
fn machine() -> Machine {
    Machine::vtx(Opts {
        virtio_ports: 0,
        ..Opts::default()
    })
}

/// `vmx ARGS` until its console holds every one of `what`, in order, in `secs`; then
/// [`Run::end`] under `heading`.
fn console_shows(m: &Machine, args: &[&str], what: &[&str], secs: u64, heading: &str) {
    let mut r = Run::start(m, args);
    r.expect(m, what, Duration::from_secs(secs));
    r.end(m, heading, None);
}

/// `vmx --bios --stats -M 128M ARGS`: the runs that go the whole way, their figures
/// printed.
fn start_long(m: &Machine, args: &[&str]) -> Run {
    Run::start(m, &[&["--bios", "--stats", "-M", "128M"], args].concat())
}

/// No VM and no segment is left on the hypervisor.
fn nothing_left(m: &Machine) {
    let start = Instant::now();
    loop {
        let c = m.client("eve", "");
        let vms: Vec<String> = c
            .ls("vmx")
            .expect("ls vmx")
            .into_iter()
            .map(|s| s.name)
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let segs: Vec<String> = c
            .ls("segment")
            .expect("ls segment")
            .into_iter()
            .map(|s| s.name)
            .collect();
        if vms.is_empty() && segs.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "left on the hypervisor: VMs {vms:?}, segments {segs:?}\n{}",
            m.diagnostics()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn seabios_boots_to_its_console_under_bochs() {
    assert!(
        std::path::Path::new(BIOS).exists(),
        "{BIOS} is missing: scripts/setup installs Debian's seabios"
    );
    let m = machine();

    // No disk: the banner, then nothing to boot.
    console_shows(
        &m,
        &["--bios", "-M", "32M"],
        &["SeaBIOS (version", "No bootable device"],
        400,
        "SeaBIOS, no disk",
    );

    // A disk of zeros: no boot sector, and SeaBIOS says so.
    let dir = scratch("vmx-bios-console");
    let blank = dir.join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    console_shows(
        &m,
        &["--bios", "-M", "32M", "-d", blank.to_str().unwrap()],
        &[
            "SeaBIOS (version",
            "not a bootable disk",
            "No bootable device",
        ],
        400,
        "SeaBIOS, a disk of zeros",
    );

    // The hybrid ISO on virtio-blk: SeaBIOS boots it and GRUB's menu appears on COM1.
    let iso = bootiso::grub_iso(&dir);
    console_shows(
        &m,
        &["--bios", "-M", "128M", "-d", iso.to_str().unwrap()],
        &[
            "SeaBIOS (version",
            "Booting from Hard Disk",
            bootiso::MENU_ENTRY,
        ],
        600,
        "SeaBIOS, the ISO to GRUB's menu",
    );

    // The same ISO cut short (its first 2 MiB): the boot sector's code cannot reach GRUB's
    // core and says so ("GRUB Geom Error"), gives the boot back to the firmware, and
    // SeaBIOS finds nothing else.
    let data = std::fs::read(&iso).unwrap();
    let short = dir.join("short.iso");
    std::fs::write(&short, &data[..2 << 20]).unwrap();
    console_shows(
        &m,
        &["--bios", "-M", "128M", "-d", short.to_str().unwrap()],
        &[
            "SeaBIOS (version",
            "Booting from Hard Disk",
            "GRUB Geom Error",
            "No bootable device",
        ],
        600,
        "SeaBIOS, a truncated ISO",
    );

    // The bootable root disk: SeaBIOS runs GRUB from its MBR, GRUB reads its menu from
    // the ext4 partition and boots the entry.
    let disk = images::need(images::boot_disk());
    let disk = disk.to_str().unwrap();
    let booting = format!("Booting `{}'", images::BOOT_DISK_ENTRY);
    console_shows(
        &m,
        &["--bios", "-M", "128M", "-d", &format!("ro:{disk}")],
        &["SeaBIOS (version", "Booting from Hard Disk", &booting],
        600,
        "SeaBIOS, the boot disk to GRUB's entry",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole way: SeaBIOS, GRUB, Debian's kernel from the ISO on the tool's virtio-blk,
/// the busybox shell, which answers 54. Slow under Bochs (GRUB reads the kernel and the
/// initramfs through SeaBIOS's virtio-blk driver, then Linux boots):
/// `cargo test -p vmm-tests --test tool_bios_bochs -- --ignored --nocapture`.
#[test]
#[ignore = "a full Linux boot through SeaBIOS and GRUB under Bochs takes more than 6 minutes"]
fn iso_boots_linux_to_a_shell_under_bochs() {
    let m = machine();
    let dir = scratch("vmx-bios-iso");
    let iso = bootiso::grub_iso(&dir);
    let start = Instant::now();
    let mut r = start_long(&m, &["-d", iso.to_str().unwrap()]);
    r.expect(&m, &[bootiso::MENU_ENTRY], Duration::from_secs(900));
    let grub = start.elapsed();
    r.shell_answers_54(&m, &[bootiso::SHELL_BANNER]);
    let shell = start.elapsed();
    r.end(
        &m,
        "the ISO to a shell",
        Some(format!(
            "GRUB's menu after {grub:?}, the shell after {shell:?}"
        )),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user's disk image, whole: `vmx/mkroot`'s `boot.img` (read-only) with nothing but
/// `--bios`: SeaBIOS, GRUB from the MBR, Debian's kernel and initramfs from the ext4
/// partition, which the initramfs mounts as root (/dev/vda1), and the shell answers 54.
/// `cargo test -p vmm-tests --test tool_bios_bochs -- --ignored --nocapture`.
#[test]
#[ignore = "a full Linux boot through SeaBIOS and GRUB under Bochs takes more than 6 minutes"]
fn boot_disk_boots_linux_to_a_shell_under_bochs() {
    // A copy the guest may write to (the initramfs mounts the partition read-write).
    let dir = scratch("vmx-bios-bootdisk");
    let disk = dir.join("boot.img");
    let cp = Command::new("cp")
        .arg("--sparse=always")
        .arg(images::need(images::boot_disk()))
        .arg(&disk)
        .status()
        .expect("run cp");
    assert!(cp.success(), "copying the boot disk failed");
    let m = machine();
    let start = Instant::now();
    let mut r = start_long(&m, &["-d", disk.to_str().unwrap()]);
    r.expect(&m, &[images::BOOT_DISK_ENTRY], Duration::from_secs(900));
    let grub = start.elapsed();
    r.shell_answers_54(&m, &[images::ROOTFS_BANNER, "/ # "]);
    let shell = start.elapsed();
    r.end(
        &m,
        "the boot disk to a shell",
        Some(format!(
            "GRUB's menu after {grub:?}, the shell after {shell:?}"
        )),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vmx --bios -M 128M -m INITRD KERNEL console=ttyS0 MARK`: SeaBIOS boots the option ROM
/// (fw_cfg's `genroms/linuxboot_dma.bin`), which loads the kernel from fw_cfg, and Linux
/// prints its version and the command line it got through fw_cfg. With `to_shell`, on to
/// the initramfs's shell, which answers 54.
fn kernel_through_fw_cfg(to_shell: bool) {
    let kernel = images::need(images::debian_kernel());
    let bb = std::fs::read(images::need(images::busybox())).expect("read busybox");
    let dir = scratch("vmx-bios-fwcfg");
    let initrd = dir.join("initrd.img");
    let script = format!("echo; echo '{}'; exec sh", bootiso::SHELL_BANNER);
    std::fs::write(&initrd, vmx::cpio::busybox_initramfs(&bb, &script)).unwrap();
    let m = machine();
    let mark = "vmx.fwcfg=kernel";
    let start = Instant::now();
    let mut r = start_long(
        &m,
        &[
            "-m",
            initrd.to_str().unwrap(),
            kernel.to_str().unwrap(),
            "console=ttyS0",
            mark,
        ],
    );
    r.expect(
        &m,
        &["SeaBIOS (version", "Booting from ROM"],
        Duration::from_secs(600),
    );
    let handover = start.elapsed();
    let command_line = format!("Command line: console=ttyS0 {mark}");
    r.expect(
        &m,
        &["Linux version", &command_line],
        Duration::from_secs(900),
    );
    let linux = start.elapsed();
    if to_shell {
        r.shell_answers_54(&m, &[bootiso::SHELL_BANNER]);
    }
    let shell = start.elapsed();
    r.end(
        &m,
        "a kernel through fw_cfg",
        Some(format!(
            "the option ROM booted after {handover:?}, Linux's first lines after {linux:?}, the end after {shell:?}"
        )),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seabios_boots_a_kernel_through_fw_cfg_under_bochs() {
    kernel_through_fw_cfg(false);
}

/// `cargo test -p vmm-tests --test tool_bios_bochs -- --ignored --nocapture`.
#[test]
#[ignore = "a full Linux boot under Bochs takes minutes"]
fn kernel_through_fw_cfg_reaches_a_shell_under_bochs() {
    kernel_through_fw_cfg(true);
}
