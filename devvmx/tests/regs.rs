//! The regs file through 9P: the seed's order and format byte for byte, and its write rules.

mod common;
use common::*;
use protocol::om;

/// What a fresh VM's regs read as on the TestHw machine (host CR0 0x80010033, CR4 0x6a0,
/// XCR0 7), worked out by hand from vmcsinit.
const FRESH: &str = "\
pc 0x0000000000000000
sp 0x0000000000000000
flags 0x0000000000000002
ax 0x0000000000000000
bx 0x0000000000000000
cx 0x0000000000000000
dx 0x0000000000000000
bp 0x0000000000000000
si 0x0000000000000000
di 0x0000000000000000
r8 0x0000000000000000
r9 0x0000000000000000
r10 0x0000000000000000
r11 0x0000000000000000
r12 0x0000000000000000
r13 0x0000000000000000
r14 0x0000000000000000
r15 0x0000000000000000
gdtrbase 0x0000000000000000
gdtrlimit 0x00000000
idtrbase 0x0000000000000000
idtrlimit 0x00000000
cs 0x0000
csbase 0x0000000000000000
cslimit 0xffffffff
csperm 0x0000c09b
ds 0x0000
dsbase 0x0000000000000000
dslimit 0xffffffff
dsperm 0x0000c093
es 0x0000
esbase 0x0000000000000000
eslimit 0xffffffff
esperm 0x0000c093
fs 0x0000
fsbase 0x0000000000000000
fslimit 0xffffffff
fsperm 0x0000c093
gs 0x0000
gsbase 0x0000000000000000
gslimit 0xffffffff
gsperm 0x0000c093
ss 0x0000
ssbase 0x0000000000000000
sslimit 0xffffffff
ssperm 0x0000c093
tr 0x0000
trbase 0x0000000000000000
trlimit 0x0000ffff
trperm 0x0000008b
ldtr 0x0000
ldtrbase 0x0000000000000000
ldtrlimit 0x00000000
ldtrperm 0x00010000
cr0real 0x0000000000000031
cr0fake 0x0000000000000031
cr0mask 0xffffffff1ffafff0
cr2 0x0000000000000000
cr3 0x0000000000000000
cr4real 0x0000000000002000
cr4fake 0x0000000000000000
cr4mask 0xffffffffffc8f040
pat 0x0007040600070406
efer 0x0000000000000000
dr0 0x0000000000000000
dr1 0x0000000000000000
dr2 0x0000000000000000
dr3 0x0000000000000000
dr6 0x0000000000000000
xcr0 0x0000000000000001
dr7 0x0000000000000000
instructionerror 0x00000000
exitreason 0x00000000
exitqualification 0x0000000000000000
exitinterruptinfo 0x00000000
exitinterruptcode 0x00000000
exitinstructionlen 0x00000000
exitinstructioninfo 0x00000000
exitva 0x0000000000000000
exitpa 0x0000000000000000
idtinterruptinfo 0x00000000
idtinterruptcode 0x00000000
";

fn reg(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap()
        .to_string()
}

fn setup() -> (Client, u32, String) {
    let mut c = Client::new();
    let (ctl, n) = c.new_vm();
    (c, ctl, n)
}

#[test]
fn fresh_regs_read_byte_for_byte() {
    let (mut c, _ctl, n) = setup();
    assert_eq!(c.read_text(&format!("vmx/{n}/regs")), FRESH);
    // Reads at later offsets continue the text made at offset 0.
    let fid = c.open_path(&format!("vmx/{n}/regs"), om::READ).unwrap();
    let R::Data(a) = c.read(fid, 0, 10) else {
        panic!()
    };
    let R::Data(b) = c.read(fid, 10, 10) else {
        panic!()
    };
    assert_eq!([a, b].concat(), FRESH.as_bytes()[..20].to_vec());
}

#[test]
fn plain_writes_and_counts() {
    let (mut c, _ctl, n) = setup();
    let p = format!("vmx/{n}/regs");
    let w = b"pc 0x1000\nax\t65\ncs 0x123456\ngdtrlimit 0x1ffffffff\n";
    assert_eq!(c.write_path(&p, w), R::Count(w.len() as u32));
    let t = c.read_text(&p);
    assert_eq!(reg(&t, "pc"), "0x0000000000001000");
    assert_eq!(reg(&t, "ax"), "0x0000000000000041");
    // A 16-bit field keeps 16 bits; a 32-bit one 32.
    assert_eq!(reg(&t, "cs"), "0x3456");
    assert_eq!(reg(&t, "gdtrlimit"), "0xffffffff");
    // Only complete lines count; a last line without its newline is not applied.
    assert_eq!(c.write_path(&p, b"bx 1\ncx 2"), R::Count(5));
    let t = c.read_text(&p);
    assert_eq!(reg(&t, "bx"), "0x0000000000000001");
    assert_eq!(reg(&t, "cx"), "0x0000000000000000");
    // Blank lines are skipped.
    assert_eq!(c.write_path(&p, b"\n\n  \ndx 3\n"), R::Count(10));
}

#[test]
fn write_errors() {
    let (mut c, _ctl, n) = setup();
    let p = format!("vmx/{n}/regs");
    for (w, e) in [
        (&b"nosuch 1\n"[..], "unknown register"),
        (b"pc\n", "number of fields wrong"),
        (b"pc 1 2\n", "number of fields wrong"),
        (b"pc zz\n", "invalid value"),
        (b"pc 0x\n", "invalid value"),
        (b"pc 12z\n", "invalid value"),
        (b"exitreason 5\n", "register is read-only"),
        (b"exitqualification 5\n", "register is read-only"),
        (b"cr0real x\n", "invalid value"),
    ] {
        assert_eq!(c.write_path(&p, w), err(e), "{w:?}");
    }
    // Lines before the failing one stay applied.
    assert_eq!(
        c.write_path(&p, b"si 7\nbogus 1\n"),
        err("unknown register")
    );
    assert_eq!(reg(&c.read_text(&p), "si"), "0x0000000000000007");
}

#[test]
fn control_register_rules() {
    let (mut c, _ctl, n) = setup();
    let p = format!("vmx/{n}/regs");
    // cr0real: the host's bits (CR0KERNEL) stay, the rest is the guest's.
    c.write_path(&p, b"cr0real 0xffffffffffffffff\n");
    let t = c.read_text(&p);
    assert_eq!(reg(&t, "cr0real"), "0x00000000e005003f");
    // The masks always include the host's bits.
    c.write_path(&p, b"cr0mask 0\ncr4mask 0x1\n");
    let t = c.read_text(&p);
    assert_eq!(reg(&t, "cr0mask"), "0xffffffff1ffafff0");
    assert_eq!(reg(&t, "cr4mask"), "0xffffffffffc8f041");
    // A CR4 VM entry would refuse (UMIP, bit 11, is not in Bochs's haswell CR4_FIXED1)
    // is refused whole, as a CR0 with PG and without PE (not in the seed).
    assert_eq!(
        c.write_path(&p, b"cr4real 0xffffffffffffffff\n"),
        err("invalid CR4 value")
    );
    assert_eq!(reg(&c.read_text(&p), "cr4real"), "0x0000000000002000");
    c.write_path(&p, b"cr4real 0xfffffffffffff7ff\n");
    assert_eq!(reg(&c.read_text(&p), "cr4real"), "0x00000000003727bf");
    assert_eq!(
        c.write_path(&p, b"cr0real 0x80000030\n"),
        err("invalid CR0 value")
    );
    assert_eq!(reg(&c.read_text(&p), "cr0real"), "0x00000000e005003f");
    // fake = real outside the mask, shadow inside it.
    c.write_path(&p, b"cr0fake 0x80000000\n");
    let t = c.read_text(&p);
    assert_eq!(reg(&t, "cr0fake"), "0x00000000e005000f");
    // dr7 and dr6 are 32 bits; xcr0 always has x87 and only host-enabled bits.
    c.write_path(&p, b"dr7 0x100000400\ndr6 0x1ffff0ff0\nxcr0 0xfe\n");
    let t = c.read_text(&p);
    assert_eq!(reg(&t, "dr7"), "0x0000000000000400");
    assert_eq!(reg(&t, "dr6"), "0x00000000ffff0ff0");
    assert_eq!(reg(&t, "xcr0"), "0x0000000000000007");
    c.write_path(&p, b"cr2 0xdead\ndr3 4\n");
    let t = c.read_text(&p);
    assert_eq!(reg(&t, "cr2"), "0x000000000000dead");
    assert_eq!(reg(&t, "dr3"), "0x0000000000000004");
}

#[test]
fn efer_lma_and_ia32e_entry_control() {
    let (mut c, _ctl, n) = setup();
    let p = format!("vmx/{n}/regs");
    let vmcs = current_vmcs(&mut c);
    let ectl = |c: &Client| c.ns.hw().field(vmcs, 0x4012) & 0x200;
    // LME without paging: LMA stays clear.
    c.write_path(&p, b"efer 0x500\n");
    assert_eq!(reg(&c.read_text(&p), "efer"), "0x0000000000000100");
    assert_eq!(ectl(&c), 0);
    // Paging on: LMA and the IA-32e mode guest control follow.
    c.write_path(&p, b"cr0real 0x80000031\n");
    assert_eq!(reg(&c.read_text(&p), "efer"), "0x0000000000000500");
    assert_eq!(ectl(&c), 0x200);
    // Paging off again: both clear.
    c.write_path(&p, b"cr0real 0x31\n");
    assert_eq!(reg(&c.read_text(&p), "efer"), "0x0000000000000100");
    assert_eq!(ectl(&c), 0);
}

fn current_vmcs(c: &mut Client) -> u64 {
    c.ns.hw().current().unwrap()
}

#[test]
fn go_takes_semicolon_records() {
    let (mut c, ctl, n) = setup();
    assert_eq!(c.write(ctl, 0, b"go pc=0x2000;sp=0x3000;"), R::Count(23));
    let t = c.read_text(&format!("vmx/{n}/regs"));
    assert_eq!(reg(&t, "pc"), "0x0000000000002000");
    assert_eq!(reg(&t, "sp"), "0x0000000000003000");
    assert_eq!(c.read_text(&format!("vmx/{n}/status")), "running\n");
    assert_eq!(c.write(ctl, 0, b"stop"), R::Count(4));
    // The last assignment counts without its `;`, as a person types it at a shell
    // (the seed ignored the unterminated pc).
    assert_eq!(c.write(ctl, 0, b"go pc=0x1002"), R::Count(12));
    let t = c.read_text(&format!("vmx/{n}/regs"));
    assert_eq!(reg(&t, "pc"), "0x0000000000001002");
    assert_eq!(c.write(ctl, 0, b"stop"), R::Count(4));
    // Several, the last unterminated; a newline after the message changes nothing.
    assert_eq!(c.write(ctl, 0, b"go ax=1;bx=2\n"), R::Count(13));
    let t = c.read_text(&format!("vmx/{n}/regs"));
    assert_eq!(reg(&t, "ax"), "0x0000000000000001");
    assert_eq!(reg(&t, "bx"), "0x0000000000000002");
    c.write(ctl, 0, b"stop");
    // The last one is checked like the others: a bad one fails the go.
    assert_eq!(c.write(ctl, 0, b"go cx=3;dx=zz"), err("invalid value"));
    assert_eq!(
        c.write(ctl, 0, b"go cx=3;nosuch=1"),
        err("unknown register")
    );
    assert_eq!(
        c.write(ctl, 0, b"go cx=3;dx"),
        err("number of fields wrong")
    );
    assert_eq!(c.read_text(&format!("vmx/{n}/status")), "ready\n");
    // Step takes the same list.
    assert_eq!(c.write(ctl, 0, b"step si=9"), R::Count(9));
    let t = c.read_text(&format!("vmx/{n}/regs"));
    assert_eq!(reg(&t, "si"), "0x0000000000000009");
}
