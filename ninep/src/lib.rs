//! A `no_std` 9P2000 server engine.
//!
//! A [`Tree`] supplies files; a [`Session`] per connection turns a byte stream into calls on
//! it and replies back into bytes. Reads may stay pending (deferred replies) while other
//! requests go on; Tflush, clunk and Tversion end them as intro(5) says.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod error;
pub mod framer;
pub mod link;
pub mod memfs;
pub mod perm;
pub mod session;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;

pub use error::Error;
pub use session::{Limits, Session, SessionStats, MIN_MSIZE};
pub use tree::{Ctx, Read, Stat, Tree};
