//! Linux's own 9P client (v9fs) mounts the hypervisor, over each transport a Linux
//! machine has to it. The hypervisor boots under Bochs (VT-x, for the guest this test
//! runs); Debian's kernel boots under QEMU TCG from a busybox initramfs
//! (vmm_tests::linux) and mounts it in plain 9P2000, either with `trans=fd` on its ttyS1,
//! wired to the hypervisor's COM1, or with `trans=tcp` from its e1000 on QEMU's user
//! network to the gateway (the host's 127.0.0.1), where Bochs's slirp forwards to the
//! kernel's port 564 on its e1000; over TCP the owner presents the secret (`aname=!S`).
//! Everything after the mount is the same session, done from the client's shell as a
//! person at a Linux machine would: ls, cat, mkdir and rmdir of a segment, dd in and out
//! (four readers at once too), a VM made through clone and driven with `echo go > ctl` and
//! a read of `wait`, a blocked read killed (v9fs flushes it), error strings v9fs knows and
//! does not; over TCP also what a client without the secret may not do. The outputs
//! asserted on are what the client's console printed; the 9P bytes are recorded in the
//! client's directory (kept when the test fails).

use std::time::Duration;
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::fixtures::Shell;
use vmm_tests::guests;
use vmm_tests::linux::{Link, Linux, GATEWAY};

const OWNER: &str = "eve";
/// The host's secret, which a network client presents to be the owner.
const SECRET: &str = "v9fs-test-secret";
/// The mount options every transport shares: plain 9P2000, and no cache, as `status`
/// and the VM files stat with length 0.
const OPTIONS: &str = "version=9p2000,cache=none";

/// How the Linux client reaches the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// Its ttyS1 to the hypervisor's COM1: `trans=fd`.
    Com1,
    /// TCP to the hypervisor's e1000: `trans=tcp`.
    Tcp,
}
/// A `key value` line's value from the status file.
use vmm_tests::status::text as field;

/// The (type, tag) of each 9P frame in a stream.
fn frames(mut b: &[u8]) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    while b.len() >= 7 {
        out.push((b[4], u16::from_le_bytes([b[5], b[6]])));
        let size = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        b = &b[size.clamp(7, b.len())..];
    }
    out
}

/// The value after `key` in a wait line.
fn wait_field(line: &str, key: &str) -> u64 {
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w
        .iter()
        .position(|k| *k == key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    u64::from_str_radix(w[i + 1].trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn linux_v9fs_over_com1_mounts_and_drives_a_guest() {
    session(Transport::Com1);
}

#[test]
fn linux_v9fs_over_tcp_mounts_and_drives_a_guest() {
    session(Transport::Tcp);
}

/// The whole session from the client's shell over `t`.
fn session(t: Transport) {
    let hv = Machine::bochs(Opts {
        cmdline: match t {
            Transport::Com1 => format!("owner={OWNER} serve=uart"),
            Transport::Tcp => format!("owner={OWNER} secret={SECRET} serve=net"),
        },
        virtio_ports: 0,
        nic: (t == Transport::Tcp).then_some(Nic::E1000),
        // Linux writes a request in pieces as QEMU's vCPU gets the host: keep the kernel's
        // partial-message timeout in wall-clock time.
        slowdown: true,
        ..Opts::default()
    });
    let link = match t {
        Transport::Com1 => Link::Serial(hv.uart_path()),
        Transport::Tcp => Link::Tcp(hv.tcp_port()),
    };
    let linux = Linux::boot(
        link,
        &[("guest.bin", guests::STEP)],
        Duration::from_secs(120),
    );
    let mut r = Shell { linux, hv };

    r.ok(&mount(&r.linux, t, OWNER, "/mnt"));
    let mounts = r.ok("grep ' /mnt ' /proc/mounts");
    assert!(mounts.contains(" /mnt 9p "), "{mounts}");
    // noextend: plain 9P2000, not 9P2000.u or .L.
    assert!(mounts.contains(",noextend,"), "{mounts}");

    let ls = r.ok("ls -l /mnt");
    let entry = |name: &str| {
        ls.lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in ls -l:\n{ls}"))
            .to_string()
    };
    assert!(entry("vmx").starts_with("dr-xr-xr-x"), "{ls}");
    assert!(entry("segment").starts_with("drwxrwxrwx"), "{ls}");
    assert!(entry("status").starts_with("-r--r--r--"), "{ls}");

    // status reads 0 bytes long: cache=none reads it anyway.
    let status = r.ok("cat /mnt/status");
    assert_eq!(field(&status, "owner"), OWNER, "{status}");
    assert_eq!(field(&status, "vms"), "0", "{status}");
    assert_eq!(field(&status, "segments"), "0", "{status}");
    assert!(status.contains("vmx ok"), "{status}");
    let memfree = field(&status, "memfree");

    // A segment: mkdir, sized through ctl, 1 MiB of data.
    r.ok("mkdir /mnt/segment/x");
    let ls = r.ok("ls /mnt/segment/x");
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), ["ctl", "data"]);
    r.ok("echo va 0x10000000 0x100000 sticky > /mnt/segment/x/ctl");
    assert_eq!(r.ok("cat /mnt/segment/x/ctl"), "va 0x10000000 0x100000\n");
    assert_eq!(r.ok("stat -c %s /mnt/segment/x/data").trim(), "1048576");

    // dd 64 KiB in at 256 KiB and out again.
    r.ok("dd if=/dev/urandom of=/tmp/in bs=4096 count=16 2>/dev/null");
    let out = r.ok("dd if=/tmp/in of=/mnt/segment/x/data bs=4096 seek=64 conv=notrunc");
    assert!(out.contains("16+0 records out"), "{out}");
    let out = r.ok("dd if=/mnt/segment/x/data of=/tmp/out bs=4096 skip=64 count=16");
    assert!(out.contains("16+0 records in"), "{out}");
    r.ok("cmp /tmp/in /tmp/out");
    // Four readers at once: their requests are in flight together, each with its tag.
    r.ok(
        "for i in 1 2 3 4; do dd if=/mnt/segment/x/data of=/tmp/p$i bs=4096 skip=64 \
          count=16 2>/dev/null & done; wait",
    );
    r.ok(
        "cmp /tmp/in /tmp/p1 && cmp /tmp/in /tmp/p2 && cmp /tmp/in /tmp/p3 && cmp /tmp/in /tmp/p4",
    );
    // Past the end of the segment: nothing more to read.
    let out = r.ok("dd if=/mnt/segment/x/data of=/dev/null bs=4096 skip=256");
    assert!(out.contains("0+0 records in"), "{out}");

    // A VM: clone opened read-write by the owner; fd 3 stays open in the shell.
    r.ok("exec 3<>/mnt/vmx/clone");
    let out = r.ok("echo vm=$(dd bs=64 count=1 <&3 2>/dev/null)");
    let n: u32 = out
        .trim()
        .strip_prefix("vm=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("clone read {out:?}"));
    let vm = format!("/mnt/vmx/{n}");
    let ls = r.ok("ls /mnt/vmx");
    let mut names: Vec<&str> = ls.split_whitespace().collect();
    names.sort();
    assert_eq!(names, [n.to_string().as_str(), "clone"], "{ls}");
    assert_eq!(
        r.ok(&format!("ls {vm}"))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ctl", "fpregs", "map", "regs", "status", "wait"]
    );

    // The guest (guests/step.S: nop, three inc eax, out 0x80) at guest-physical 0x1000.
    r.ok("dd if=/guest.bin of=/mnt/segment/x/data bs=4096 seek=1 conv=notrunc");
    r.ok(&format!("echo rwx wb 0x0 0x100000 x 0x0 > {vm}/map"));
    assert!(
        r.ok(&format!("cat {vm}/map"))
            .starts_with("rwx wb 0x0 0x100000 x 0x0"),
        "the map as written"
    );
    r.ok(&format!(
        "printf 'pc 0x1000\\nsp 0x8000\\nax 0\\n' > {vm}/regs"
    ));
    r.ok(&format!("echo go > {vm}/ctl"));
    // wait gives one line per read and blocks for the next exit: one read(2), which v9fs
    // makes one Tread only for an O_NONBLOCK file.
    let line = r.ok(&format!("readonce {vm}/wait"));
    assert!(line.starts_with("io 0x800040 "), "out 0x80: {line:?}");
    assert_eq!(wait_field(&line, "ax") & 0xff, 3, "{line:?}");
    assert_eq!(wait_field(&line, "pc"), 0x1004, "{line:?}");
    assert_eq!(r.ok(&format!("cat {vm}/status")), "ready\n");
    let pc = r.ok(&format!("grep '^pc ' {vm}/regs"));
    assert_eq!(
        pc.split_whitespace()
            .nth(1)
            .map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()),
        Some(0x1004),
        "{pc}"
    );

    // A read of wait with no exit to come blocks; killing its reader makes v9fs flush it
    // (Tflush, answered by Rflush) and the session goes on.
    let treads = |r: &Shell| {
        let sent = frames(&r.linux.ninep_bytes(true));
        sent.iter().filter(|f| f.0 == 116).count()
    };
    let before = treads(&r);
    r.ok(&format!("readonce {vm}/wait & echo $! > /tmp/wpid"));
    r.ok("p=$(cat /tmp/wpid); until grep -q p9_client_rpc /proc/$p/wchan; do sleep 0.1; done");
    // The Tread must be on the wire before the reader dies: v9fs drops a request it has
    // not sent yet without a Tflush, which a loaded host's slow transport can make happen.
    let sent_by = std::time::Instant::now() + Duration::from_secs(30);
    while treads(&r) == before {
        assert!(
            std::time::Instant::now() < sent_by,
            "the wait read's Tread never went out"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = r.ok("p=$(cat /tmp/wpid); kill -9 $p; wait $p; echo status=$?");
    assert!(out.contains("status=137"), "the reader was killed: {out}");
    assert_eq!(r.ok(&format!("cat {vm}/status")), "ready\n");
    let sent = frames(&r.linux.ninep_bytes(true));
    assert!(sent.iter().any(|f| f.0 == 108), "no Tflush sent");
    let got = frames(&r.linux.ninep_bytes(false));
    assert!(got.iter().any(|f| f.0 == 109), "no Rflush came back");
    // The four readers' Treads were in flight together: more than one tag.
    let mut tags: Vec<u16> = sent.iter().filter(|f| f.0 == 116).map(|f| f.1).collect();
    tags.sort();
    tags.dedup();
    assert!(tags.len() > 1, "Tread tags {tags:?}");

    // An error string v9fs does not know arrives as errno 526; dmesg has the text.
    let out = r.fails(&format!("echo bogus >> {vm}/ctl"));
    assert!(out.contains("Unknown error 526"), "{out}");
    let dmesg = r.ok("dmesg | grep 'unknown error' | tail -n 1");
    assert!(dmesg.contains("unknown control message"), "{dmesg}");
    // One it knows arrives as its errno.
    let out = r.fails("cat /mnt/nonexistent");
    assert!(out.contains("No such file or directory"), "{out}");

    r.ok(&format!("echo quit > {vm}/ctl"));
    r.ok("exec 3<&-");
    assert_eq!(r.ok("ls /mnt/vmx").trim(), "clone");

    r.ok("rmdir /mnt/segment/x");
    assert_eq!(r.ok("ls /mnt/segment"), "");
    let status = r.ok("cat /mnt/status");
    assert_eq!(field(&status, "vms"), "0", "{status}");
    assert_eq!(field(&status, "segments"), "0", "{status}");
    assert_eq!(
        field(&status, "memfree"),
        memfree,
        "all memory back: {status}"
    );

    r.ok("umount /mnt");
    assert_eq!(r.ok("grep -c ' 9p ' /proc/mounts || true").trim(), "0");

    if t == Transport::Tcp {
        without_the_secret(&mut r);
    }
}

/// The command that mounts the hypervisor at `at` as `uname` over `t`; over TCP with the
/// secret when `uname` is the owner.
fn mount(linux: &Linux, t: Transport, uname: &str, at: &str) -> String {
    match t {
        // The serial line is fd 3 of mount only: the transport keeps its own reference.
        Transport::Com1 => format!(
            "mount -t 9p -o trans=fd,rfdno=3,wfdno=3,{OPTIONS},uname={uname} none {at} \
             3<>/dev/ttyS1"
        ),
        Transport::Tcp => {
            let aname = if uname == OWNER {
                format!(",aname=!{SECRET}")
            } else {
                String::new()
            };
            format!(
                "mount -t 9p -o trans=tcp,port={},{OPTIONS},uname={uname}{aname} {GATEWAY} {at}",
                linux.tcp_port()
            )
        }
    }
}

/// Over TCP the owner's uname alone is a claim: without the secret (or with a wrong one)
/// the attach is refused, and a client attached as another user may read `status` but not
/// open `vmx/clone`.
fn without_the_secret(r: &mut Shell) {
    let port = r.linux.tcp_port();
    let tcp = format!("mount -t 9p -o trans=tcp,port={port},{OPTIONS}");
    for aname in ["", ",aname=!wrong", ",aname=!"] {
        r.ok("dmesg -c > /dev/null");
        let out = r.fails(&format!("{tcp},uname={OWNER}{aname} {GATEWAY} /mnt"));
        assert!(out.contains("Unknown error 526"), "{aname:?}: {out}");
        let dmesg = r.ok("dmesg | grep 'unknown error'");
        assert!(
            dmesg.contains("the owner must present the secret"),
            "{aname:?}: {dmesg}"
        );
    }
    assert_eq!(r.ok("grep -c ' 9p ' /proc/mounts || true").trim(), "0");

    let mount = mount(&r.linux, Transport::Tcp, "glenda", "/mnt");
    r.ok(&mount);
    let status = r.ok("cat /mnt/status");
    assert_eq!(field(&status, "owner"), OWNER, "{status}");
    // In a subshell: a failed redirection of exec ends the shell it runs in.
    let out = r.fails("(exec 3<>/mnt/vmx/clone)");
    assert!(out.contains("Permission denied"), "{out}");
    let out = r.fails("cat /mnt/vmx/clone");
    assert!(out.contains("Permission denied"), "{out}");
    assert_eq!(r.ok("ls /mnt/vmx").trim(), "clone", "no VM was made");
    r.ok("umount /mnt");
}
