//! What a client call can fail with.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// The server answered Rerror with this string, exactly.
    Remote(String),
    /// The connection failed (or a timeout set with `Client::set_timeout` expired).
    Io(io::Error),
    /// The server's reply made no sense: bad frame, wrong reply type, bad version.
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The Rerror string, if the server sent one.
    pub fn remote(&self) -> Option<&str> {
        match self {
            Error::Remote(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote(s) => f.write_str(s),
            Error::Io(e) => write!(f, "9p i/o: {e}"),
            Error::Protocol(s) => write!(f, "9p protocol: {s}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<protocol::Error> for Error {
    fn from(e: protocol::Error) -> Self {
        Error::Protocol(e.as_str().to_string())
    }
}
