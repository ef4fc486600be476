//! The Linux loader's plan boots a real Debian kernel. QEMU cannot start a CPU in the
//! state #X gives a guest, so a small multiboot shim stands in for the hypervisor: QEMU
//! loads it high, it copies each chunk of the plan to its guest-physical address, loads
//! the plan's registers (GDT, segments, esi) and jumps to the plan's entry point, in the
//! flat 32-bit protected mode a vmx guest starts in. The kernel then finds only what the
//! loader gave it: the boot_params, its e820 map and the command line.
//!
//! Needs qemu-system-x86 and binutils (scripts/setup), and a Debian kernel: see
//! `debian_kernel` for where it is looked for.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vmm_tests::fixtures::{images, need};
use vmx::layout::Layout;
use vmx::loader::{self, BootArgs, Image, Module};

/// Where the shim is loaded and runs (above everything the plan writes).
const SHIM: u64 = 0x0800_0000;

/// Assembles the shim around `img` into a flat multiboot (a.out kludge) image.
fn shim(img: &Image, dir: &std::path::Path) -> PathBuf {
    let reg = |n: &str| {
        img.regs
            .iter()
            .find(|r| r.0.name() == n)
            .map(|r| r.1)
            .unwrap_or_else(|| panic!("plan sets no {n}"))
    };
    let mut table = String::new();
    let mut data = String::new();
    for (i, c) in img.chunks.iter().enumerate() {
        assert!(
            c.addr + c.data.len() as u64 <= SHIM,
            "chunk {c:?} overlaps the shim"
        );
        let f = dir.join(format!("chunk{i}.bin"));
        std::fs::write(&f, &c.data).unwrap();
        table.push_str(&format!(
            "        .long chunk{i}, {:#x}, {:#x}\n",
            c.addr,
            c.data.len()
        ));
        data.push_str(&format!("chunk{i}: .incbin \"{}\"\n", f.display()));
    }
    let src = format!(
        r#"
        .intel_syntax noprefix
        .code32
        .globl _start
_start:
hdr:    .long 0x1badb002, 0x10000, -(0x1badb002 + 0x10000)
        .long hdr, hdr, 0, 0, entry
entry:  cli
        mov esp, {SHIM:#x}
        cld
        lea ebx, table
1:      mov ecx, [ebx + 8]
        test ecx, ecx
        jz 2f
        mov esi, [ebx]
        mov edi, [ebx + 4]
        rep movsb
        add ebx, 12
        jmp 1b
2:      lgdt [gdtr]
        mov ax, {ds:#x}
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov fs, ax
        mov gs, ax
        mov esi, {si:#x}
        xor ebp, ebp
        xor edi, edi
        xor ebx, ebx
        ljmp {cs:#x}, {pc:#x}
gdtr:   .word {limit:#x}
        .long {base:#x}
        .align 4
table:
{table}        .long 0, 0, 0
{data}
"#,
        ds = reg("ds"),
        si = reg("si"),
        cs = reg("cs"),
        pc = reg("pc"),
        limit = reg("gdtrlimit"),
        base = reg("gdtrbase"),
    );
    let s = dir.join("shim.S");
    std::fs::write(&s, src).unwrap();
    let o = dir.join("shim.o");
    let bin = dir.join("shim.bin");
    let st = Command::new("as")
        .arg("--32")
        .arg("-o")
        .arg(&o)
        .arg(&s)
        .status()
        .expect("as (binutils)");
    assert!(st.success(), "as failed");
    let st = Command::new("ld")
        .args([
            "-m",
            "elf_i386",
            &format!("-Ttext={SHIM:#x}"),
            "-e",
            "_start",
            "--oformat=binary",
            "-o",
        ])
        .arg(&bin)
        .arg(&o)
        .status()
        .expect("ld (binutils)");
    assert!(st.success(), "ld failed");
    bin
}

/// Boots `args` with the Debian kernel through the shim; returns the serial output once
/// it contains `until` (or QEMU exits, or two minutes pass).
fn boot(args: BootArgs, mem: u64, until: &str) -> String {
    let kernel = std::fs::read(need(images::debian_kernel())).unwrap();
    let layout = Layout::new(mem).unwrap();
    let img = loader::load(&kernel, &layout, &args).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "vmx-linux-qemu-{}-{}",
        std::process::id(),
        until.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = shim(&img, &dir);
    let log = dir.join("serial.log");
    let mut child = Command::new("qemu-system-x86_64")
        // TCG: this machine's KVM stalls the shim's boot (as it stalls GRUB, see
        // shared/notes/emulators.md); TCG boots to the panic in a few seconds.
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
            "-kernel",
        ])
        .arg(&bin)
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 (apt-get install qemu-system-x86)");
    let start = Instant::now();
    let mut text = String::new();
    while start.elapsed() < Duration::from_secs(120) {
        text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        if child.try_wait().unwrap().is_some() || text.contains(until) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    if std::env::var_os("VMX_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    text
}

#[test]
fn debian_kernel_boots_from_the_linux_plan() {
    // Guest memory below the shim; QEMU gets more, so nothing the kernel is told is RAM
    // holds firmware tables. Without a root file system the kernel panics.
    let cmdline = "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 vmxplan=ok";
    let text = boot(
        BootArgs {
            cmdline: cmdline.into(),
            modules: vec![],
        },
        120 << 20,
        "Unable to mount root fs",
    );
    assert!(
        text.contains("Linux version 6."),
        "no kernel banner:\n{text}"
    );
    assert!(
        text.contains(&format!("Command line: {cmdline}")),
        "command line not seen:\n{text}"
    );
    // The e820 map the kernel reports is the loader's.
    assert!(
        text.contains("BIOS-e820: [mem 0x0000000000000000-0x000000000009ffff] usable"),
        "{text}"
    );
    assert!(
        text.contains("BIOS-e820: [mem 0x00000000000c0000-0x00000000000fffff] reserved"),
        "{text}"
    );
    assert!(
        text.contains("BIOS-e820: [mem 0x0000000000100000-0x00000000077fffff] usable"),
        "{text}"
    );
    assert!(
        text.contains("Unable to mount root fs"),
        "the kernel did not get as far as mounting root:\n{text}"
    );
}

fn busybox() -> Vec<u8> {
    std::fs::read(need(images::busybox())).expect("busybox")
}

#[test]
fn debian_kernel_runs_a_busybox_initramfs_from_the_plan() {
    let initrd = vmx::cpio::busybox_initramfs(
        &busybox(),
        "echo vmx-initramfs-$((6*7)); uname -r; cat /proc/cmdline; poweroff -f",
    );
    let args = BootArgs {
        cmdline: "console=ttyS0 panic=-1 quiet".into(),
        modules: vec![Module {
            name: "initrd".into(),
            data: initrd,
        }],
    };
    let text = boot(args, 120 << 20, "vmx-initramfs-42");
    assert!(
        text.contains("vmx-initramfs-42"),
        "init did not run:\n{text}"
    );
}
