//! `ninep-host --unix PATH --tcp 127.0.0.1:PORT --owner NAME`: serves the test tree.
//!
//! Prints `unix PATH` and `tcp ADDR` (the bound address, so port 0 works) for each
//! listener, then `ready`, on stdout.

use ninep::Limits;
use ninep_host::{test_tree, Server};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ninep-host [--unix PATH] [--tcp HOST:PORT] [--owner NAME]";

fn main() -> ExitCode {
    let mut unix: Vec<PathBuf> = Vec::new();
    let mut tcp: Vec<String> = Vec::new();
    let mut owner = String::from("glenda");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--unix" | "--tcp" | "--owner" => match args.next() {
                Some(v) => v,
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        };
        match a.as_str() {
            "--unix" => unix.push(v.into()),
            "--tcp" => tcp.push(v),
            _ => owner = v,
        }
    }
    if unix.is_empty() && tcp.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let server = Server::new(test_tree(&owner), Limits::default());
    let mut out = std::io::stdout();
    for p in &unix {
        if let Err(e) = server.listen_unix(p) {
            eprintln!("ninep-host: unix {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
        let _ = writeln!(out, "unix {}", p.display());
    }
    for a in &tcp {
        match server.listen_tcp(a) {
            Ok(addr) => {
                let _ = writeln!(out, "tcp {addr}");
            }
            Err(e) => {
                eprintln!("ninep-host: tcp {a}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    server.run();
    ExitCode::SUCCESS
}
