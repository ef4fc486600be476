//! The VMX capability MSRs read as the SDM says (devvmx's `caps`), through the served
//! tree: the TRUE controls or not, what a CPU must have (refused by name in `status` and
//! at `clone`), what it may lack (VPID, the preemption timer), the preemption timer's
//! rate, and the CR0/CR4 fixed bits for the host and a guest.

mod common;
use common::*;
use devvmx::caps::EptVpidCap;
use devvmx::hw::Hw;
use devvmx::testhw::{Exit, TestHw};
use devvmx::vmcs::*;
use protocol::om;

/// A CPU's VMCS fields after a clone (the VM it made is current).
fn cloned(hw: TestHw) -> (Client, u64) {
    let mut c = Client::with_hw(hw);
    let _ = c.new_vm();
    let vmcs = c.ns.hw().current().expect("a current VMCS");
    (c, vmcs)
}

/// Runs VM `v` to its next exit, a hlt.
fn run_once(c: &mut Client, v: &Vm) {
    c.ns.hw_mut().exits.push_back(Exit::new(EXIT_HLT.into()));
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    c.run();
}

#[test]
fn true_controls_where_vmx_basic_says_so() {
    // TRUE MSRs: CR3-load and -store exiting (processor-based bits 15, 16) may be clear,
    // and are.
    let (c, vmcs) = cloned(TestHw::new(256));
    let f = |k| c.ns.hw().field(vmcs, k);
    assert_eq!(f(PROCB_CTLS), 0xb580_65fa);
    assert_eq!(
        (f(PINB_CTLS), f(VMEXIT_CTLS), f(VMENTRY_CTLS)),
        (0x5f, 0x3b_6fff, 0xd1ff)
    );
    // They are what is read: the plain pin-based, exit and entry MSRs are not needed.
    let mut hw = TestHw::new(256);
    for m in [VMX_PINB_CTLS_MSR, VMX_VMEXIT_CTLS_MSR, VMX_VMENTRY_CTLS_MSR] {
        hw.msrs.remove(&m.0);
    }
    let (c, vmcs) = cloned(hw);
    assert_eq!(c.ns.hw().field(vmcs, PROCB_CTLS), 0xb580_65fa);
    // An optional allowed-1 setting the TRUE exit MSR lacks (saving the debug controls)
    // is left out.
    let mut hw = TestHw::new(256);
    hw.disallow(&[VMX_TRUE_EXIT_CTLS_MSR], VMEXIT_ST_DEBUG);
    let (c, vmcs) = cloned(hw);
    assert_eq!(
        c.ns.hw().field(vmcs, VMEXIT_CTLS),
        0x3b_6fff & !u64::from(VMEXIT_ST_DEBUG)
    );

    // Without them (bit 55 clear, the TRUE MSRs absent): the plain MSRs' default-1 bits,
    // CR3 exiting included.
    let (c, vmcs) = cloned(TestHw::without_true_ctls(256));
    let f = |k| c.ns.hw().field(vmcs, k);
    assert_eq!(f(PROCB_CTLS), 0xb581_e5fa);
    assert_eq!(
        (f(PINB_CTLS), f(VMEXIT_CTLS), f(VMENTRY_CTLS)),
        (0x5f, 0x3b_6fff, 0xd1ff)
    );
}

/// What a test CPU is made to lack.
type Lack = Box<dyn Fn(&mut TestHw)>;

#[test]
fn a_cpu_lacking_what_vms_need_is_refused_by_name() {
    let procb = [VMX_PROCB_CTLS_MSR, VMX_TRUE_PROCB_CTLS_MSR];
    let cap_without = |bits: u64| {
        move |hw: &mut TestHw| {
            *hw.msrs.get_mut(&VMX_EPT_VPID_CAP_MSR.0).unwrap() &= !bits;
        }
    };
    let cases: Vec<(Lack, &str)> = vec![
        (
            Box::new(cap_without(EptVpidCap::WALK4)),
            "no EPT 4-level page walk",
        ),
        (
            Box::new(cap_without(EptVpidCap::WB)),
            "no write-back EPT paging structures",
        ),
        (Box::new(cap_without(EptVpidCap::INVEPT)), "no INVEPT"),
        (
            Box::new(cap_without(EptVpidCap::INVEPT_SINGLE)),
            "no single-context INVEPT",
        ),
        (
            Box::new(|hw| hw.disallow(&[VMX_TRUE_PINB_CTLS_MSR], PINB_EXITIRQ)),
            "no external-interrupt exiting",
        ),
        (
            Box::new(move |hw| hw.disallow(&procb, PROCB_EXITIO)),
            "no unconditional I/O exiting",
        ),
        (
            Box::new(|hw| hw.disallow(&[VMX_TRUE_EXIT_CTLS_MSR], VMEXIT_HOST64)),
            "no 64-bit host address space",
        ),
        (
            Box::new(move |hw| hw.disallow(&procb, PROCB_MSRBITMAP)),
            "no MSR bitmaps",
        ),
        (
            Box::new(|hw| hw.disallow(&[VMX_TRUE_ENTRY_CTLS_MSR], VMENTRY_LD_IA32_PAT)),
            "no PAT load on entry",
        ),
        (
            Box::new(|hw| hw.disallow(&[VMX_TRUE_ENTRY_CTLS_MSR], VMENTRY_GUEST64)),
            "no IA-32e mode guest",
        ),
        (
            // IA32_VMX_BASIC bits 53:50: the VMCS's memory type, uncacheable.
            Box::new(|hw| {
                *hw.msrs.get_mut(&VMX_BASIC_MSR.0).unwrap() &= !(0xf << 50);
            }),
            "VMCS memory type not write-back",
        ),
        (
            Box::new(|hw| {
                hw.msrs.remove(&VMX_MISC_MSR.0);
            }),
            "rdmsr(VMX_MISC_MSR) failed",
        ),
    ];
    for (lack, why) in cases {
        let mut hw = TestHw::new(64);
        lack(&mut hw);
        let mut c = Client::with_hw(hw);
        assert!(
            c.read_text("status")
                .ends_with(&format!("vmx unavailable: {why}\n")),
            "{why}"
        );
        assert_eq!(
            c.open_path("vmx/clone", om::RDWR),
            Err(err(&format!("no vmx: {why}")))
        );
    }
    // Without the TRUE MSRs, the plain ones decide.
    let mut hw = TestHw::without_true_ctls(64);
    hw.disallow(&[VMX_VMENTRY_CTLS_MSR], VMENTRY_LD_IA32_EFER);
    let mut c = Client::with_hw(hw);
    assert_eq!(
        c.open_path("vmx/clone", om::RDWR),
        Err(err("no vmx: no EFER load on entry"))
    );
}

#[test]
fn without_vpid_vms_run_without() {
    // No VPID control, or no single-context INVVPID to flush one: the control stays
    // clear, the VPID field (absent on such a CPU) is not written, nothing is flushed by
    // VPID.
    let no_invvpid = |hw: &mut TestHw| {
        *hw.msrs.get_mut(&VMX_EPT_VPID_CAP_MSR.0).unwrap() &= !EptVpidCap::INVVPID_SINGLE;
    };
    let no_vpid = |hw: &mut TestHw| hw.disallow(&[VMX_PROCB_CTLS2_MSR], PROCB_VPID);
    for lack in [&no_invvpid as &dyn Fn(&mut TestHw), &no_vpid] {
        let mut hw = TestHw::new(256);
        lack(&mut hw);
        let mut c = Client::with_hw(hw);
        assert!(c.read_text("status").ends_with("vmx ok\n"));
        let v = c.vm();
        let vmcs = c.ns.hw().current().unwrap();
        assert_eq!(c.ns.hw().field(vmcs, PROCB_CTLS2), 0x82);
        run_once(&mut c, &v);
        assert_eq!(c.ns.hw().entries.len(), 1);
        assert!(c.ns.hw().invvpid.is_empty());
        assert_eq!(c.ns.hw().invept.len(), 1);
    }
    // With both, each VM has its VPID and flushes it on its first entry.
    let mut c = Client::new();
    let v = c.vm();
    let vmcs = c.ns.hw().current().unwrap();
    assert_eq!(c.ns.hw().field(vmcs, PROCB_CTLS2), 0xa2);
    run_once(&mut c, &v);
    assert_eq!(c.ns.hw().invvpid, vec![1]);
}

#[test]
fn the_preemption_timer_runs_at_the_rate_vmx_misc_gives() {
    // The quantum is 2.048 ms: at TestHw's 1 GHz TSC 2_048_000 ticks, and the timer
    // counts TSC >> rate; at an 8 MHz TSC (Bochs's) 16384. Bochs's rate is 0.
    for (rate, hz, ticks) in [
        (5u64, 1_000_000_000, 64_000u64),
        (0, 1_000_000_000, 2_048_000),
        (0, 8_000_000, 0x4000),
        (5, 8_000_000, 0x200),
        (21, 1_000_000_000, 1),
        (0, 4_000_000_000_000, u32::MAX.into()),
    ] {
        let mut hw = TestHw::new(256);
        hw.tsc_rate = hz;
        hw.msrs.insert(VMX_MISC_MSR.0, 0x2004_01e0 | rate);
        let mut c = Client::with_hw(hw);
        let v = c.vm();
        let vmcs = c.ns.hw().current().unwrap();
        run_once(&mut c, &v);
        assert_eq!(c.ns.hw().field(vmcs, PINB_CTLS) & 1 << 6, 1 << 6);
        assert_eq!(
            c.ns.hw().field(vmcs, VMX_PREEMPT_TIMER),
            ticks,
            "rate {rate} at {hz} Hz"
        );
    }
    // A CPU without the timer: the control stays clear and the field (absent) is never
    // written; the guest still runs.
    let mut hw = TestHw::new(256);
    hw.disallow(&[VMX_PINB_CTLS_MSR, VMX_TRUE_PINB_CTLS_MSR], PINB_PREEMPT);
    let mut c = Client::with_hw(hw);
    let v = c.vm();
    let vmcs = c.ns.hw().current().unwrap();
    assert_eq!(c.ns.hw().field(vmcs, PINB_CTLS), 0x1f);
    run_once(&mut c, &v);
    assert_eq!(c.ns.hw().entries.len(), 1);
    assert_eq!(c.read_text(&format!("vmx/{}/status", v.n)), "ready\n");
}

#[test]
fn host_cr0_and_cr4_get_their_fixed_bits_before_vmxon() {
    // CR4.VMXE clear at boot, and a fixed-0 bit (OSFXSR, 9) the host lacks: both set.
    let mut hw = TestHw::new(256);
    hw.set_cr4(0x4a0);
    hw.msrs.insert(VMX_CR4_FIXED0.0, 0x2200);
    let mut c = Client::with_hw(hw);
    let _ = c.new_vm();
    assert_eq!(c.ns.hw().cr4(), 0x26a0);
    assert!(c.ns.hw().vmx_on());
    // A host bit the fixed-1 MSR forbids is not cleared: VMXON is refused.
    let mut hw = TestHw::new(256);
    hw.msrs.insert(VMX_CR4_FIXED1.0, 0x0037_27df);
    let mut c = Client::with_hw(hw);
    assert_eq!(
        c.open_path("vmx/clone", om::RDWR),
        Err(err("invalid CR4 value"))
    );
    assert!(!c.ns.hw().vmx_on());
    let mut hw = TestHw::new(256);
    hw.msrs.insert(VMX_CR0_FIXED1.0, 0xffff_fffd);
    let mut c = Client::with_hw(hw);
    assert_eq!(
        c.open_path("vmx/clone", om::RDWR),
        Err(err("invalid CR0 value"))
    );
}

#[test]
fn a_guest_cr0_or_cr4_vm_entry_would_refuse_is_refused() {
    // CD (bit 30) not allowed by this CPU's CR0_FIXED1.
    let mut hw = TestHw::new(256);
    hw.msrs.insert(VMX_CR0_FIXED1.0, 0xbfff_ffff);
    let mut c = Client::with_hw(hw);
    let v = c.vm();
    let p = format!("vmx/{}/regs", v.n);
    let cr0 = |c: &mut Client| {
        let t = c.read_text(&p);
        let l = t.lines().find(|l| l.starts_with("cr0real")).unwrap();
        l.split_whitespace().nth(1).unwrap().to_string()
    };
    let before = cr0(&mut c);
    assert_eq!(
        c.write_path(&p, b"cr0real 0x40000031\n"),
        err("invalid CR0 value")
    );
    // PG without PE.
    assert_eq!(
        c.write_path(&p, b"cr0real 0x80000030\n"),
        err("invalid CR0 value")
    );
    assert_eq!(cr0(&mut c), before);
    // Unrestricted guest: PE and PG, which CR0_FIXED0 requires of the host, may be clear;
    // and both set is fine.
    assert_eq!(c.write_path(&p, b"cr0real 0x30\n"), R::Count(13));
    assert_eq!(cr0(&mut c), "0x0000000000000030");
    assert_eq!(c.write_path(&p, b"cr0real 0x80000031\n"), R::Count(19));
    // In `go` as well: the VM stays ready, with its CR0.
    assert_eq!(
        c.write(v.ctl, 0, b"go cr0real=0x40000031"),
        err("invalid CR0 value")
    );
    assert_eq!(c.read_text(&format!("vmx/{}/status", v.n)), "ready\n");
    assert_eq!(cr0(&mut c), "0x0000000080000031");
}
