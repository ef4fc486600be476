#!/usr/bin/env python3
"""Drives ninep-host with python-9p (module py9p), a client nobody here wrote.

Usage: python9p_client.py --unix PATH --tcp HOST:PORT --owner NAME

Every check runs over the unix socket and over TCP. Each assertion failure or exception
exits non-zero; a missing py9p module is an ImportError, which fails too (no skipping).
"""

import argparse
import socket
import struct
import sys
import threading

from py9p.client import Client, RemoteError
from py9p.constants import NOFID, NOTAG
from py9p.io import read_message, write_message
from py9p.messages import (
    Dir, Qid, Rattach, Rclunk, Rerror, Rflush, Ropen, Rread, Rversion, Rwalk, Rwrite,
    Tattach, Tclunk, Tflush, Topen, Tread, Tversion, Twalk, Twrite,
)

OREAD, OWRITE, ORDWR, OEXEC, OTRUNC, ORCLOSE = 0, 1, 2, 3, 0x10, 0x40
DMDIR = 0x80000000
QTDIR = 0x80


def big_byte(i):
    return (i * 7) % 251


def expect_error(what, fn, ename):
    try:
        fn()
    except RemoteError as e:
        assert str(e) == ename, f"{what}: got error {str(e)!r}, want {ename!r}"
        return
    raise AssertionError(f"{what}: succeeded, want error {ename!r}")


def s9(b):
    """A 9P string: s[2] then the bytes, whatever they are."""
    return struct.pack("<H", len(b)) + b


def dont_touch(mode=0xFFFFFFFF, length=0xFFFFFFFFFFFFFFFF, name="", qid_path=0xFFFFFFFFFFFFFFFF,
               muid=""):
    """A wstat record, "don't touch" in every field but those given (stat(5)).

    Built by hand: py9p's Dir refuses a length of ~0, which stat(5) needs."""
    body = struct.pack("<HIBIQIIIQ", 0xFFFF, 0xFFFFFFFF, 0xFF, 0xFFFFFFFF,
                       qid_path, mode, 0xFFFFFFFF, 0xFFFFFFFF, length)
    body += s9(name.encode()) + s9(b"") + s9(b"") + s9(muid.encode())
    return struct.pack("<H", len(body)) + body


class Conn:
    """A connection factory: a fresh socket to the same server."""

    def __init__(self, kind, addr):
        self.kind, self.addr = kind, addr

    def socket(self):
        if self.kind == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.addr)
        else:
            host, port = self.addr.rsplit(":", 1)
            s = socket.create_connection((host, int(port)))
        s.settimeout(10)
        return s

    def client(self, msize=8192):
        return Client(self.socket(), msize=msize)


def check_version(conn):
    c = conn.client(msize=8192)
    r = c.negotiate()
    assert (r.msize, r.version, r.tag) == (8192, "9P2000", NOTAG), r
    c.close()
    # A dialect of 9P2000 is answered with plain 9P2000; anything else with "unknown".
    for offer, want in (("9P2000.L", "9P2000"), ("9P2000.u", "9P2000"), ("XP3", "unknown")):
        c = conn.client()
        r = c.rpc(Tversion(msize=8192, version=offer), Rversion)
        assert r.version == want, (offer, r)
        c.close()
    # A huge msize is lowered to the server's limit, never raised.
    c = conn.client(msize=1 << 24)
    r = c.negotiate()
    assert 65536 + 24 <= r.msize < 1 << 24, r
    c.close()
    # Requests before Tversion are refused.
    c = conn.client()
    expect_error("attach before version",
                 lambda: c.attach(0, uname="x"), "version not negotiated")
    c.close()


def check_files(conn, owner):
    c = conn.client()
    c.negotiate()
    # attach
    root = c.attach(0, uname=owner)
    assert root.type & QTDIR, root
    expect_error("auth afid", lambda: c.attach(1, uname=owner, afid=5),
                 "authentication not required")
    expect_error("fid in use", lambda: c.attach(0, uname=owner), "fid in use")
    # walk: full, partial (qids walked so far, no error), failing first name
    q = c.walk(0, 1, "dir/a")
    assert len(q) == 2 and q[0].type & QTDIR and not q[1].type & QTDIR, q
    q = c.walk(0, 2, "dir/nope/deeper")
    assert len(q) == 1, q
    expect_error("unknown fid after partial walk", lambda: c.stat(2), "unknown fid")
    expect_error("walk nope", lambda: c.walk(0, 2, "nope"), "file does not exist")
    assert c.walk(0, 2, "") == ()  # clone
    assert c.walk(2, 2, "dir") != ()  # newfid == fid
    c.clunk(2)
    # open + read
    c.walk(0, 3, "hello")
    qid, iounit = c.open(3, OREAD)
    assert iounit == 8192 - 24, iounit
    assert c.read(3, 100, 0) == b"hello, world\n"
    assert c.read(3, 5, 7) == b"world"
    assert c.read(3, 100, 13) == b""
    expect_error("write on OREAD", lambda: c.write(3, b"x", 0), "inappropriate use of fd")
    expect_error("open twice", lambda: c.open(3, OREAD), "file already open")
    c.clunk(3)
    expect_error("clunked fid", lambda: c.read(3, 1, 0), "unknown fid")
    c.walk(0, 3, "big")
    c.open(3, OREAD)
    data = b""
    while True:
        chunk = c.read(3, 8192, len(data))
        if not chunk:
            break
        assert len(chunk) <= 8192 - 24
        data += chunk
    assert len(data) == 256 * 1024 and all(b == big_byte(i) for i, b in enumerate(data))
    c.clunk(3)
    expect_error("read unopened", lambda: (c.walk(0, 3, "hello"), c.read(3, 1, 0)),
                 "file not open")
    c.clunk(3)
    # directory read: whole stat records, offsets following the previous read
    c.walk(0, 4, "")
    c.open(4, OREAD)
    names, off = [], 0
    while True:
        chunk = c.read(4, 100, off)  # small count: one record per read
        if not chunk:
            break
        off += len(chunk)
        from py9p.native import decode_dir
        while chunk:
            n = int.from_bytes(chunk[:2], "little") + 2
            names.append(decode_dir(chunk[:n]).name)
            chunk = chunk[n:]
    assert names == ["hello", "secret", "big", "dir", "wait", "ro"], names
    expect_error("bad dir offset", lambda: c.read(4, 100, 3), "bad offset in directory read")
    c.clunk(4)
    # create + write + read back
    c.walk(0, 5, "dir")
    qid, iounit = c.create(5, "new", 0o644, ORDWR)
    assert not qid.type & QTDIR and iounit == 8192 - 24
    assert c.write(5, b"written by py9p", 0) == 15
    assert c.read(5, 100, 11) == b"py9p"
    c.clunk(5)
    c.walk(0, 5, "dir")
    expect_error("create existing", lambda: c.create(5, "new", 0o644, OREAD), "file already exists")
    c.clunk(5)
    c.walk(0, 5, "dir")
    qid, _ = c.create(5, "sub", DMDIR | 0o755, OREAD)
    assert qid.type & QTDIR
    c.clunk(5)
    c.walk(0, 6, "dir/new")
    c.open(6, OWRITE | OTRUNC)
    c.clunk(6)
    # stat
    c.walk(0, 6, "dir/new")
    st = c.stat(6)
    assert (st.name, st.uid, st.length, st.mode) == ("new", owner, 0, 0o644), st
    st = c.stat(0)
    assert st.mode & DMDIR, st
    # wstat: all don't-touch (a sync), length, mode, name
    c.wstat(6, dont_touch())
    c.wstat(6, dont_touch(length=10))
    assert c.stat(6).length == 10
    c.wstat(6, dont_touch(mode=0o600, name="renamed"))
    st = c.stat(6)
    assert (st.name, st.mode) == ("renamed", 0o600), st
    expect_error("rename onto existing", lambda: c.wstat(6, dont_touch(name="a")),
                 "file already exists")
    c.clunk(6)
    # remove
    c.walk(0, 7, "dir/renamed")
    c.remove(7)
    expect_error("removed fid is gone", lambda: c.stat(7), "unknown fid")
    assert len(c.walk(0, 7, "dir/renamed")) == 1  # a partial walk: it is gone
    c.walk(0, 7, "dir/sub")
    c.remove(7)
    c.walk(0, 7, "dir")
    expect_error("remove non-empty dir", lambda: c.remove(7), "directory not empty")
    # ORCLOSE
    c.walk(0, 8, "")
    c.create(8, "tmpfile", 0o644, ORDWR | ORCLOSE)
    c.clunk(8)
    expect_error("ORCLOSE removed", lambda: c.walk(0, 8, "tmpfile"), "file does not exist")
    c.close()


def check_second_attach(conn, owner):
    c = conn.client()
    c.negotiate()
    c.attach(0, uname=owner)
    c.attach(1, uname="intruder")
    c.walk(1, 2, "secret")
    expect_error("other reads secret", lambda: c.open(2, OREAD), "permission denied")
    c.walk(1, 3, "ro/motd")
    c.open(3, OREAD)
    assert c.read(3, 100, 0) == b"read only\n"
    c.walk(1, 4, "ro/motd")
    expect_error("other writes motd", lambda: c.open(4, OWRITE), "permission denied")
    c.walk(1, 5, "ro")
    expect_error("other creates in ro", lambda: c.create(5, "x", 0o644, OWRITE), "permission denied")
    c.walk(1, 6, "hello")
    expect_error("other wstats hello", lambda: c.wstat(6, dont_touch(mode=0o777)), "permission denied")
    # The owner's attach on the same connection is unaffected.
    c.walk(0, 7, "secret")
    c.open(7, OREAD)
    assert c.read(7, 100, 0) == b"owner only\n"
    c.close()


def check_blocked_read_and_flush(conn, owner):
    # With the multiplexing client: a read blocked on `wait` does not hold up others.
    c = conn.client()
    c.negotiate()
    c.attach(0, uname=owner)
    c.walk(0, 1, "wait")
    c.open(1, OREAD)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", c.read(1, 100, 0)), daemon=True)
    t.start()
    for _ in range(20):
        c.walk(0, 2, "hello")
        c.clunk(2)
    assert t.is_alive(), "read on an empty queue returned"
    c.walk(0, 3, "wait")
    c.open(3, OWRITE)
    assert c.write(3, b"vm exited", 0) == 9
    t.join(10)
    assert got.get("r") == b"vm exited", got
    c.close()

    # Raw frames, to see every reply: Tflush of a blocked read gets Rflush and the read
    # never gets a reply.
    s = conn.socket()

    def rpc(msg):
        write_message(s, msg)
        return read_message(s)

    assert isinstance(rpc(Tversion(msize=8192, version="9P2000")), Rversion)
    assert isinstance(rpc(Tattach(fid=0, uname=owner, tag=1)), Rattach)
    assert isinstance(rpc(Twalk(fid=0, newfid=1, wname=("wait",), tag=1)), Rwalk)
    assert isinstance(rpc(Topen(fid=1, mode=OREAD, tag=1)), Ropen)
    write_message(s, Tread(fid=1, offset=0, count=100, tag=40))
    r = rpc(Tflush(oldtag=40, tag=41))
    assert isinstance(r, Rflush) and r.tag == 41, r
    # A record written now goes to the next read, not to the flushed one.
    assert isinstance(rpc(Twalk(fid=0, newfid=2, wname=("wait",), tag=1)), Rwalk)
    assert isinstance(rpc(Topen(fid=2, mode=OWRITE, tag=1)), Ropen)
    r = rpc(Twrite(fid=2, offset=0, data=b"after flush", tag=42))
    assert isinstance(r, Rwrite) and r.tag == 42, r
    r = rpc(Tread(fid=1, offset=0, count=100, tag=43))
    assert isinstance(r, Rread) and r.tag == 43 and r.data == b"after flush", r
    # Flushing a tag that is not outstanding is answered too.
    r = rpc(Tflush(oldtag=999, tag=44))
    assert isinstance(r, Rflush) and r.tag == 44, r
    # Nothing else is queued for us (in particular no reply to tag 40).
    s.settimeout(0.3)
    try:
        extra = s.recv(1)
    except socket.timeout:
        extra = b""
    assert extra == b"", f"unexpected bytes after flush: {extra!r}"
    s.close()


def expect_hangup(s, what):
    """The host ends the connection: end of file, no bytes, within the timeout."""
    s.settimeout(5)
    try:
        got = s.recv(100)
    except ConnectionResetError:
        got = b""
    except socket.timeout:
        raise AssertionError(f"{what}: the connection stayed open")
    assert got == b"", f"{what}: unexpected bytes {got!r}"
    s.close()


def check_garbage_then_version(conn, owner):
    """A socket has a hang-up: what can never be a frame ends the connection at once
    (a line would skip it in silence up to the next Tversion), before a session or in
    one; a new connection is served."""
    s = conn.socket()
    # A size below the header.
    s.sendall(b"\x03\x00\x00\x00")
    expect_hangup(s, "size below the header")
    s = conn.socket()
    write_message(s, Tversion(msize=8192, version="9P2000"))
    r = read_message(s)
    assert isinstance(r, Rversion) and r.version == "9P2000" and r.tag == NOTAG, r
    c = Client(s, msize=8192)
    c.msize = r.msize
    c.attach(0, uname=owner)
    c.walk(0, 1, "hello")
    c.open(1, OREAD)
    assert c.read(1, 100, 0) == b"hello, world\n"
    # Garbage mid-session: a size past msize.
    s.sendall(b"\xff\xff\xff\xff" + b"junk" * 10)
    expect_hangup(s, "size past msize")
    c = conn.client(msize=8192)
    c.negotiate()
    c.attach(0, uname=owner)
    c.walk(0, 1, "hello")
    c.open(1, OREAD)
    assert c.read(1, 100, 0) == b"hello, world\n"
    c.close()


def check_malformed_requests(conn, owner):
    """Well-framed requests whose bodies do not decode each get an Rerror on their own
    tag, and the session goes on (they used to get no reply, and every later request was
    ignored until the next Tversion)."""
    s = conn.socket()

    def frame(ty, tag, body):
        return struct.pack("<IBH", 7 + len(body), ty, tag) + body

    def rpc(msg):
        write_message(s, msg)
        return read_message(s)

    assert isinstance(rpc(Tversion(msize=8192, version="9P2000")), Rversion)
    assert isinstance(rpc(Tattach(fid=0, uname=owner, tag=1)), Rattach)
    stat = dont_touch(mode=0o600)
    cases = [
        ("walk name not UTF-8", frame(110, 10, struct.pack("<IIH", 0, 1, 1) + s9(b"\xff\xfe")),
         "bad character in file name"),
        ("create name with NUL",
         frame(114, 11, struct.pack("<I", 0) + s9(b"a\0b") + struct.pack("<IB", 0o644, ORDWR)),
         "bad character in file name"),
        ("walk of 17 names", frame(110, 12, struct.pack("<IIH", 0, 1, 17) + s9(b"a") * 17),
         "too many names in walk"),
        ("trailing bytes", frame(120, 13, struct.pack("<I", 99) + b"\0"),
         "extra bytes at end of message"),
        ("body shorter than its fields", frame(120, 14, b"\1\0"), "short message"),
        ("string past the frame",
         frame(104, 15, struct.pack("<IIH", 5, NOFID, 60) + owner.encode()), "short message"),
        ("write count above its data", frame(118, 16, struct.pack("<IQI", 0, 0, 9) + b"abcd"),
         "short message"),
        ("stat record cut short", frame(126, 17, struct.pack("<IH", 0, len(stat) - 1) + stat[:-1]),
         "malformed stat buffer"),
        ("R-message as a request", frame(121, 18, b""), "bad message type"),
    ]
    for what, b, ename in cases:
        s.sendall(b)
        r = read_message(s)
        tag = struct.unpack("<H", b[5:7])[0]
        assert isinstance(r, Rerror) and (r.tag, r.ename) == (tag, ename), (what, r)
        r = rpc(Twalk(fid=0, newfid=1, wname=("hello",), tag=2))
        assert isinstance(r, Rwalk) and len(r.wqid) == 1, (what, r)
        assert isinstance(rpc(Tclunk(fid=1, tag=3)), Rclunk), what
    s.close()

    # Directories open only for reading; wstat cannot change qid or muid.
    c = conn.client()
    c.negotiate()
    c.attach(0, uname=owner)
    c.walk(0, 1, "dir")
    for mode in (OREAD | ORCLOSE, OEXEC, OWRITE):
        expect_error(f"open dir {mode:#x}", lambda: c.open(1, mode), "file is a directory")
    c.open(1, OREAD)
    c.clunk(1)
    assert len(c.walk(0, 1, "dir")) == 1  # ORCLOSE did not remove it
    c.clunk(1)
    c.walk(0, 2, "hello")
    expect_error("wstat qid", lambda: c.wstat(2, dont_touch(mode=0o600, qid_path=12345)),
                 "wstat -- attempt to change qid")
    expect_error("wstat muid", lambda: c.wstat(2, dont_touch(mode=0o600, muid="nobody")),
                 "wstat -- attempt to change muid")
    assert c.stat(2).mode == 0o644  # nothing applied
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unix", required=True)
    ap.add_argument("--tcp", required=True)
    ap.add_argument("--owner", required=True)
    a = ap.parse_args()
    for conn in (Conn("unix", a.unix), Conn("tcp", a.tcp)):
        for check in (check_version, check_files, check_second_attach,
                      check_blocked_read_and_flush, check_garbage_then_version,
                      check_malformed_requests):
            if check is check_version:
                check(conn)
            else:
                check(conn, a.owner)
            print(f"ok {conn.kind} {check.__name__}", flush=True)
    print("python-9p: all checks passed")


if __name__ == "__main__":
    sys.exit(main())
