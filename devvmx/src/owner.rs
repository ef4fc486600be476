//! Who may be the host owner. On a serial line (a cable to the machine) the claimed uname
//! is believed, as today. On a network link the owner's uname must come with the host's
//! secret (`secret=` on the kernel command line) in the attach name: `vmx!SECRET`,
//! `segment!SECRET`, or `!SECRET` for the root. Any other uname is an ordinary user, and
//! may read what others may read. The secret crosses the network in clear, as any 9P
//! without auth does: keep the port on a trusted network. Wrong secrets cost their sender
//! time: the kernel holds such replies as `crate::throttle` decides.

use alloc::collections::BTreeSet;
use alloc::string::String;

/// Refusal of the owner's uname without the secret on a network link.
pub const ENOSECRET: &str = "permission denied: the owner must present the secret";

#[derive(Clone, Default, PartialEq)]
pub struct Owners {
    secret: Option<String>,
    /// Sessions serving network links.
    network: BTreeSet<u32>,
}

/// The attach name without its `!SECRET` part, and that part.
pub fn split_aname(aname: &str) -> (&str, Option<&str>) {
    match aname.split_once('!') {
        Some((name, secret)) => (name, Some(secret)),
        None => (aname, None),
    }
}

/// Equal, in time that depends on the lengths only.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

impl Owners {
    pub fn set_secret(&mut self, secret: Option<String>) {
        self.secret = secret.filter(|s| !s.is_empty());
    }

    pub fn set_network(&mut self, session: u32, network: bool) {
        if network {
            self.network.insert(session);
        } else {
            self.network.remove(&session);
        }
    }

    /// Does an attach by `uname` on `session` stand or fall by the secret? (The owner's,
    /// on a network link: what `throttle` slows when it is wrong.)
    pub fn checks(&self, owner: &str, uname: &str, session: u32) -> bool {
        uname == owner && self.network.contains(&session)
    }

    /// Checks an attach by `uname` on `session` (`owner` is the host owner); returns the
    /// attach name to serve.
    pub fn attach<'a>(
        &self,
        owner: &str,
        uname: &str,
        session: u32,
        aname: &'a str,
    ) -> Result<&'a str, &'static str> {
        let (name, given) = split_aname(aname);
        if self.checks(owner, uname, session) {
            let ok = match (&self.secret, given) {
                (Some(s), Some(g)) => ct_eq(s.as_bytes(), g.as_bytes()),
                _ => false,
            };
            if !ok {
                return Err(ENOSECRET);
            }
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_owner_needs_the_secret() {
        let mut o = Owners::default();
        o.set_secret(Some("s3".into()));
        o.set_network(2, true);
        assert_eq!(
            o.attach("eve", "eve", 1, "vmx"),
            Ok("vmx"),
            "serial: believed"
        );
        assert_eq!(o.attach("eve", "eve", 1, "vmx!x"), Ok("vmx"));
        assert_eq!(o.attach("eve", "eve", 2, "vmx"), Err(ENOSECRET));
        assert_eq!(o.attach("eve", "eve", 2, "vmx!s"), Err(ENOSECRET));
        assert_eq!(o.attach("eve", "eve", 2, "vmx!s33"), Err(ENOSECRET));
        assert_eq!(o.attach("eve", "eve", 2, "!s3"), Ok(""));
        assert_eq!(o.attach("eve", "eve", 2, "vmx!s3"), Ok("vmx"));
        assert_eq!(
            o.attach("eve", "glenda", 2, "vmx"),
            Ok("vmx"),
            "others: ordinary"
        );
        o.set_network(2, false);
        assert_eq!(o.attach("eve", "eve", 2, "vmx"), Ok("vmx"));
        // No secret configured: nobody is the owner over the network.
        let mut n = Owners::default();
        n.set_network(3, true);
        assert_eq!(n.attach("eve", "eve", 3, "vmx!"), Err(ENOSECRET));
    }

    #[test]
    fn compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }
}
