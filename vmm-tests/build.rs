//! Assembles the test guests in guests/ into flat binaries loaded at 0x1000, and the
//! Linux tools in linux/ into static x86-64 executables for the Linux client's initramfs.

use std::path::Path;
use std::process::Command;

const GUESTS: &[(&str, &str)] = &[
    ("realmode", "--32"),
    ("memory", "--32"),
    ("events", "--32"),
    ("step", "--32"),
    ("triple", "--32"),
    ("long", "--64"),
    ("bench", "--32"),
    ("hammer", "--32"),
    ("count", "--32"),
    ("pingpong", "--32"),
    ("netflood", "--32"),
];

fn run(cmd: &mut Command) {
    let st = cmd
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is binutils installed?)"));
    assert!(st.success(), "{cmd:?} failed");
}

/// Tools the Linux client runs (vmm_tests::linux): static executables, no libc.
const LINUX_TOOLS: &[&str] = &["readonce"];

fn main() {
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    for name in LINUX_TOOLS {
        let src = format!("linux/{name}.S");
        println!("cargo:rerun-if-changed={src}");
        let obj = Path::new(&out).join(format!("{name}.o"));
        run(Command::new("as").arg("--64").arg("-o").arg(&obj).arg(&src));
        run(Command::new("ld")
            .args(["-m", "elf_x86_64", "-static", "-e", "_start", "-o"])
            .arg(Path::new(&out).join(name))
            .arg(&obj));
    }
    // The flat 32-bit set-up several guests `.include` (vmx's demo guest too), and the
    // 8259 pair's programming of those that take interrupts, and the card guests' virtio-net
    // start.
    for inc in ["flat32.inc", "pic8259.inc", "vnet.inc"] {
        println!("cargo:rerun-if-changed=guests/{inc}");
    }
    for (name, arch) in GUESTS {
        let src = format!("guests/{name}.S");
        println!("cargo:rerun-if-changed={src}");
        let obj = Path::new(&out).join(format!("{name}.o"));
        let bin = Path::new(&out).join(format!("{name}.bin"));
        run(Command::new("as")
            .args([arch, "-I", "guests", "-o"])
            .arg(&obj)
            .arg(&src));
        let emul = if *arch == "--64" {
            "elf_x86_64"
        } else {
            "elf_i386"
        };
        run(Command::new("ld")
            .args([
                "-m",
                emul,
                "-Ttext=0x1000",
                "-e",
                "_start",
                "--oformat=binary",
                "-o",
            ])
            .arg(&bin)
            .arg(&obj));
    }
}
