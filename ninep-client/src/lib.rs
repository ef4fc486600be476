//! A std 9P2000 client.
