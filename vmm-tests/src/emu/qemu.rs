//! Launching the ISO (or the kernel alone) under QEMU. The arguments `qemu/run` uses too
//! come from `qemu/flags`; what only the harness sets (the log file, a NIC with free host
//! ports) is added here. A new launch option is a field of [`Opts`] read below.

use super::NET_READY;
use super::{free_port, iso, kernel_elf, run_dir, workspace, Kind, Machine, Nic, Opts, Slot};
use std::path::Path;
use std::process::{Command, Stdio};

/// `qemu/flags ARGS`: one argument a line.
fn shared_flags(args: &[&str], dir: &Path) -> Vec<String> {
    let out = Command::new(workspace().join("qemu/flags"))
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .output()
        .expect("run qemu/flags");
    assert!(
        out.status.success(),
        "qemu/flags {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

impl Machine {
    /// Boots the ISO under QEMU (KVM with nested VT-x where the host has it, else TCG:
    /// `qemu/accel`).
    pub fn qemu(opts: Opts) -> Machine {
        let iso = iso(&opts.cmdline);
        let slot = Slot::take();
        let dir = run_dir(Kind::Qemu);
        let log = dir.join("e9.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(shared_flags(&["machine"], &dir))
            .arg("-m")
            .arg(opts.mem_mb.to_string())
            .arg("-smp")
            .arg(opts.cpus.to_string());
        if opts.direct {
            cmd.arg("-kernel")
                .arg(kernel_elf())
                .arg("-append")
                .arg(&opts.cmdline);
        } else {
            cmd.arg("-cdrom").arg(&iso).args(["-boot", "d"]);
        }
        cmd.arg("-debugcon").arg(format!("file:{}", log.display()));
        let tcp_echo_port = (opts.nic.is_some() && opts.tcp_echo).then(free_port);
        let tcp_port = opts.nic.map(|nic| {
            let port = free_port();
            let echo = tcp_echo_port
                .map(|p| format!(",hostfwd=tcp:127.0.0.1:{p}-:7"))
                .unwrap_or_default();
            let (ga, gp) = opts.guest_fwd;
            cmd.arg("-netdev")
                .arg(format!(
                    "user,id=n0,hostfwd=tcp:127.0.0.1:{port}-{ga}:{gp}{echo}"
                ))
                .arg("-device")
                .arg(match nic {
                    Nic::VirtioNet => "virtio-net-pci,netdev=n0",
                    Nic::E1000 => "e1000,netdev=n0",
                    Nic::E1000e => "e1000e,netdev=n0",
                });
            port
        });
        cmd.args(shared_flags(
            &["virtio", &opts.virtio_ports.to_string()],
            &dir,
        ));
        cmd.args(&opts.qemu_args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.err")).expect("create qemu.err"))
            .spawn()
            .expect("start qemu-system-x86_64 (is QEMU installed?)");
        let mut m = Machine {
            kind: Kind::Qemu,
            child,
            dir,
            log,
            virtio_ports: opts.virtio_ports,
            tcp_port,
            tcp_echo_port,
            _slot: slot,
        };
        m.wait_log(opts.until, opts.boot_timeout);
        if tcp_port.is_some() {
            m.wait_log(NET_READY, opts.boot_timeout);
        }
        m
    }
}
