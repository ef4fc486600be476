//! Assembles the demo guest (guest/demo.S) into a multiboot ELF kernel with binutils; it
//! includes the test guests' flat 32-bit set-up (vmm-tests/guests/flat32.inc).

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) {
    let st = cmd
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is binutils installed?)"));
    assert!(st.success(), "{cmd:?} failed");
}

fn main() {
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let src = "guest/demo.S";
    println!("cargo:rerun-if-changed={src}");
    let inc = "../vmm-tests/guests";
    println!("cargo:rerun-if-changed={inc}/flat32.inc");
    let obj = Path::new(&out).join("demo.o");
    let elf = Path::new(&out).join("demo.elf");
    run(Command::new("as")
        .args(["--32", "-I", inc, "-o"])
        .arg(&obj)
        .arg(src));
    // -N: one read-write-execute segment, no page padding, so the header sits near the
    // start of the file; linked and loaded at 1 MiB.
    run(Command::new("ld")
        .args([
            "-m",
            "elf_i386",
            "-N",
            "-Ttext=0x100000",
            "-e",
            "_start",
            "-o",
        ])
        .arg(&elf)
        .arg(&obj));
}
