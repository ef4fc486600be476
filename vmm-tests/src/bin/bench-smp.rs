//! 9P round trips per second from a client while guests spin, with 1, 2 and 4 CPUs under
//! Bochs, and the latency from a `stop` write to the VM's status reading `ready`
//! (issue 12, Benchmarks). Figures only: nothing is asserted.
//!
//! cargo run --release -p vmm-tests --bin bench-smp [SECONDS] [GUESTS]
//!
//! For each CPU count (and 4 CPUs with only the boot CPU started): boot, Tstat rate of `status` on an idle hypervisor; then GUESTS
//! (default 2) VMs run the bench guest with a 2^32-iteration `loop` (a spinning guest for
//! the whole figure) and the Tstat rate is taken again; then each VM is stopped and the
//! time until its status file says `ready` is printed. The goal: with CPUs for the guests,
//! the busy rate within 10% of the idle one.

use std::time::{Duration, Instant};
use vmm_tests::bench::{self, tstat};
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::guests;

const OWNER: &str = "eve";
/// (CPUs the machine has, CPUs the kernel starts: `cpus=` on its command line). The last
/// row leaves three CPUs in wait-for-SIPI, to tell what Bochs's emulated CPUs cost from
/// what the started APs' idle loop costs.
const CPUS: [(u32, u32); 4] = [(1, 1), (2, 2), (4, 4), (4, 1)];

fn main() {
    bench::require_programs("bench-smp", &["bochs", "grub-mkrescue"]);
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<f64>().ok());
    let secs = args.next().unwrap_or(3.0);
    let guests_n = args.next().unwrap_or(2.0) as usize;
    println!(
        "Bochs, COM1 9P; {guests_n} spinning guests; {secs} s per figure; load average {}",
        bench::load_average()
    );
    println!(
        "{:>7} {:>10} {:>10} {:>10} {:>14}",
        "cpus", "idle RT/s", "busy RT/s", "busy/idle", "stop->ready ms"
    );
    for (cpus, started) in CPUS {
        let m = Machine::bochs(Opts {
            cmdline: format!("owner={OWNER} serve=uart cpus={started}"),
            virtio_ports: 0,
            cpus,
            ..Opts::default()
        });
        let c = m.client(OWNER, "");
        c.set_timeout(Some(Duration::from_secs(60)));
        bench::segment(&c, "spin");
        tstat(&c, 0.5); // warm-up
        let (idle, _) = tstat(&c, secs);
        let vms: Vec<_> = (0..guests_n).map(|_| bench::vm(&c, "spin")).collect();
        for vm in &vms {
            vm.ctl
                .write_str(&format!("go pc={:#x};bx=0xffffffff;", guests::LOAD))
                .expect("go");
        }
        let (busy, _) = tstat(&c, secs);
        let mut stops = Vec::new();
        for vm in &vms {
            let status = c
                .open(&format!("vmx/{}/status", vm.n), ninep_client::om::READ)
                .expect("open status");
            let read = || String::from_utf8_lossy(&status.read_at(0, 64).unwrap()).to_string();
            let before = read();
            let t = Instant::now();
            vm.ctl.write_str("stop").expect("stop");
            while read().trim() != "ready" {}
            stops.push(format!(
                "{:.1}{}",
                t.elapsed().as_secs_f64() * 1e3,
                if before.trim() == "running" {
                    ""
                } else {
                    "(not running)"
                }
            ));
        }
        println!(
            "{:>7} {idle:>10.0} {busy:>10.0} {:>10.2} {:>14}",
            format!("{started}/{cpus}"),
            busy / idle,
            stops.join(" ")
        );
        drop(vms);
        drop(m);
    }
    println!(
        "cpus: started/in the machine; RT: a 9P round trip (Tstat of status); busy: while the guests spin; stop->ready: \
         from the stop write to the status file reading ready, per guest. With APs the guests \
         run there (fewest VMs first) and the boot CPU only serves 9P; with one CPU started \
         they share it with 9P. Bochs emulates its CPUs in one thread, so each CPU it runs \
         slows the others."
    );
}
