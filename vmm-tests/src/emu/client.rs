//! 9P connections to a machine's links: raw sockets, and clients that synchronise a serial
//! line first.

use super::raw::{sync, MSIZE};
use super::Machine;
use ninep_client::Client;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

impl Machine {
    /// A Plan 9 dial string for a socket (`unix!/path`).
    pub fn dial_string(path: &Path) -> String {
        format!("unix!{}", path.display())
    }

    /// A raw connection to a link, for byte-level tests.
    pub fn raw(&self, path: &Path) -> UnixStream {
        let s = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect {}: {e}\n{}", path.display(), self.diagnostics()));
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s
    }

    /// A 9P client attached as `uname` to `aname` over the socket at `path`.
    ///
    /// A serial line has no connect signal, and an emulator may drop the last bytes a
    /// previous client sent when it hung up: the kernel can then hold half a message that
    /// swallows the start of our Tversion. So the link is first synchronised as a serial
    /// client must: Tversion until an Rversion comes back (the kernel's framer resyncs on
    /// the garbage that follows a swallowed one). The client then starts its own session.
    pub fn client_on(&self, path: &Path, uname: &str, aname: &str) -> Client {
        self.client_msize(path, uname, aname, MSIZE)
    }

    /// As `client_on`, offering `msize`.
    pub fn client_msize(&self, path: &Path, uname: &str, aname: &str, msize: u32) -> Client {
        let mut s = self.raw(path);
        if let Err(e) = sync(&mut s) {
            panic!(
                "no Rversion on {}: {e}\n{}",
                path.display(),
                self.diagnostics()
            );
        }
        s.set_read_timeout(None).ok();
        let c = Client::over_msize(s, uname, aname, msize).unwrap_or_else(|e| {
            panic!(
                "9P attach as {uname:?} to {aname:?} on {}: {e}\n{}",
                path.display(),
                self.diagnostics()
            )
        });
        c.set_timeout(Some(Duration::from_secs(30)));
        c
    }

    /// The host port forwarded to the kernel's 9P port (with `Opts::nic`).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port.expect("the machine has no NIC (Opts::nic)")
    }

    /// The host port forwarded to the kernel's echo port (with `Opts::tcp_echo`).
    pub fn tcp_echo_port(&self) -> u16 {
        self.tcp_echo_port
            .expect("no echo forward (Opts::tcp_echo)")
    }

    /// `tcp!127.0.0.1!PORT`.
    pub fn tcp_dial(&self) -> String {
        format!("tcp!127.0.0.1!{}", self.tcp_port())
    }

    /// A raw TCP connection to the kernel's 9P port.
    pub fn tcp_raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.tcp_port()))
            .unwrap_or_else(|e| panic!("connect to the 9P port: {e}\n{}", self.diagnostics()));
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.set_nodelay(true).ok();
        s
    }

    /// A 9P client over TCP, attached as `uname` to `aname`: a stream needs no resync.
    pub fn tcp_client(&self, uname: &str, aname: &str) -> Client {
        self.try_tcp_client(uname, aname).unwrap_or_else(|e| {
            panic!(
                "9P attach as {uname:?} to {aname:?} over TCP: {e}\n{}",
                self.diagnostics()
            )
        })
    }

    /// As `tcp_client`, for attaches that may be refused.
    pub fn try_tcp_client(&self, uname: &str, aname: &str) -> Result<Client, String> {
        let s = self.tcp_raw();
        s.set_read_timeout(None).ok();
        let c = Client::over_msize(s, uname, aname, MSIZE).map_err(|e| e.to_string())?;
        c.set_timeout(Some(Duration::from_secs(30)));
        Ok(c)
    }

    /// A 9P client on the main link.
    pub fn client(&self, uname: &str, aname: &str) -> Client {
        self.client_on(&self.main_path(), uname, aname)
    }
}
