//! The owner's attach on a network session, with the session's gate on: its reply, right
//! or wrong, is held for the transport (which decides when wrong secrets are answered),
//! and the session takes nothing else meanwhile. Other unames are not held.

mod common;

use common::{err, Client, OWNER, R};
use devvmx::owner::ENOSECRET;
use devvmx::testhw::TestHw;
use devvmx::{Config, Namespace};
use protocol::Fcall;

/// A versioned network session (id 1) whose host's secret is `s3`, with the gate on.
fn network() -> Client {
    let mut ns = Namespace::new(
        TestHw::new(4096),
        Config {
            owner: OWNER.into(),
            version: "test",
        },
    );
    let mut facts = ns.facts().clone();
    facts.owners.set_secret(Some("s3".into()));
    facts.owners.set_network(1, true);
    ns.set_facts(facts);
    let mut c = Client::connect(ns);
    c.s.set_gate(true);
    assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
    c
}

fn attach(c: &mut Client, tag: u16, fid: u32, uname: &str, aname: &str) {
    c.send(
        tag,
        Fcall::Tattach {
            fid,
            afid: protocol::NOFID,
            uname,
            aname,
        },
    );
}

#[test]
fn a_wrong_secret_is_held_and_holds_up_only_its_session() {
    let mut c = network();
    attach(&mut c, 1, 0, OWNER, "vmx!guess");
    // The next request waits behind it.
    c.send(2, Fcall::Tstat { fid: 0 });
    assert_eq!(c.s.held(), Some(false));
    assert!(c.replies().is_empty(), "a held reply went out");
    c.process();
    assert!(c.replies().is_empty(), "the session went on while holding");
    c.s.release_held();
    assert_eq!(c.s.held(), None);
    assert_eq!(c.replies(), [(1, err(ENOSECRET))]);
    c.process();
    assert_eq!(c.replies(), [(2, err("unknown fid"))]);
}

#[test]
fn a_right_secret_is_held_too_and_attaches() {
    let mut c = network();
    attach(&mut c, 1, 0, OWNER, "vmx!s3");
    assert_eq!(c.s.held(), Some(true));
    assert!(c.replies().is_empty());
    c.s.release_held();
    let r = c.replies();
    assert!(matches!(r[..], [(1, R::Open(_))]), "{r:?}");
}

#[test]
fn others_and_ungated_sessions_are_answered_at_once() {
    let mut c = network();
    assert!(matches!(c.attach(0, "glenda", "vmx!guess"), R::Open(_)));
    assert_eq!(c.s.held(), None);
    // The gate off: the owner's wrong secret is refused at once.
    c.s.set_gate(false);
    assert_eq!(c.attach(1, OWNER, "vmx!guess"), err(ENOSECRET));
    assert_eq!(c.s.held(), None);
}

#[test]
fn a_new_version_drops_what_is_held() {
    let mut c = network();
    attach(&mut c, 1, 0, OWNER, "vmx!guess");
    assert_eq!(c.s.held(), Some(false));
    c.s.reset(&mut c.ns);
    assert_eq!(c.s.held(), None);
    assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
}
