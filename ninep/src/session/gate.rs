//! The throttle's held-reply gate: with the gate on ([`super::Session::set_gate`]), the
//! reply to an attach the tree gates ([`crate::Tree::gated`]) is encoded, then held back
//! until the transport releases it, and no request is taken meanwhile.

use super::engine::Engine;
use crate::tree::Tree;
use alloc::vec::Vec;

/// A gated attach's reply, encoded, waiting for the transport.
pub(super) struct Held {
    pub(super) reply: Vec<u8>,
    /// Whether it is an Rattach (else an Rerror).
    pub(super) ok: bool,
}

impl<T: Tree> Engine<T> {
    /// Answers a Tattach, holding the reply when the gate is on and the tree gates it.
    pub(super) fn attach_gated(
        &mut self,
        tree: &mut T,
        tag: u16,
        fid: u32,
        afid: u32,
        uname: &str,
        aname: &str,
    ) {
        let gated = self.gate && tree.gated(&self.ctx(uname), aname);
        let r = self.attach(tree, fid, afid, uname, aname);
        if !gated {
            return self.reply(tag, r);
        }
        let ok = r.is_ok();
        let start = self.out.end();
        self.reply(tag, r);
        let reply = self.out.split_off(start);
        self.held = Some(Held { reply, ok });
    }

    /// Queues the held reply for sending; requests are taken again.
    pub(super) fn release_held(&mut self) {
        if let Some(h) = self.held.take() {
            self.out.extend(&h.reply);
        }
    }
}
