#!/usr/bin/env python3
"""Drives ninep-host with p9fs (fsspec over 9P2000), a client nobody here wrote.

Usage: p9fs_client.py --tcp HOST:PORT --owner NAME

p9fs speaks TCP only and takes paths without a leading '/'. What its filesystem API
lacks (wstat, Tflush, a second attach, Tversion on a live connection) is driven through
the py9p protocol client p9fs itself runs on (`fs.client`). A missing module is an
ImportError: the test fails, it does not skip.
"""

import argparse
import socket
import sys
import threading

from p9fs import P9FileSystem
from py9p import py9p

OREAD, OWRITE, ORDWR = 0, 1, 2
NOFID = 0xFFFFFFFF


def big_byte(i):
    return (i * 7) % 251


def expect_rpc_error(what, fn, ename):
    try:
        fn()
    except py9p.RpcError as e:
        got = e.args[0]
        got = got.decode() if isinstance(got, bytes) else got
        assert got == ename, f"{what}: got error {got!r}, want {ename!r}"
        return
    raise AssertionError(f"{what}: succeeded, want error {ename!r}")


def connect(host, port, owner):
    # version + attach happen in the constructor; fsspec would hand back a cached
    # instance (the same connection) for the same arguments.
    return P9FileSystem(host=host, port=port, username=owner, version="9P2000",
                        skip_instance_cache=True)


def check_fsspec(fs, owner):
    # version: what was negotiated
    assert fs.client.version == py9p.Version.v9P2000
    assert fs.client.msize == 8192, fs.client.msize
    # walk + stat (info), ls (directory reads)
    info = fs.info("hello")
    assert (info["type"], info["size"]) == ("file", 13), info
    assert fs.info("dir")["type"] == "directory"
    names = sorted(i["name"].strip("/").split("/")[-1] for i in fs.ls(""))
    assert names == ["big", "dir", "hello", "ro", "secret", "wait"], names
    names = sorted(fs.ls("dir", detail=False))
    assert names == ["dir/a", "dir/b"], names
    # open + read
    assert fs.cat_file("hello") == b"hello, world\n"
    assert fs.cat_file("dir/a") == b"alpha\n"
    big = fs.cat_file("big")
    assert len(big) == 256 * 1024 and all(b == big_byte(i) for i, b in enumerate(big))
    with fs.open("big", "rb") as f:
        f.seek(100000)
        assert f.read(5) == bytes(big_byte(i) for i in range(100000, 100005))
    # create + write, across several Twrites
    payload = bytes(range(256)) * 100
    with fs.open("p9fs-file", "wb") as f:
        f.write(payload)
    assert fs.cat_file("p9fs-file") == payload
    assert fs.info("p9fs-file")["size"] == len(payload)
    fs.mkdir("p9fs-dir/inner", create_parents=True)
    assert fs.isdir("p9fs-dir/inner")
    with fs.open("p9fs-dir/inner/x", "wb") as f:
        f.write(b"nested")
    assert fs.cat_file("p9fs-dir/inner/x") == b"nested"
    # remove
    fs.rm("p9fs-file")
    fs.rm("p9fs-dir/inner/x")
    fs.rmdir("p9fs-dir/inner")
    fs.rmdir("p9fs-dir")
    for p in ("p9fs-file", "p9fs-dir"):
        expect_rpc_error(f"info {p} after rm", lambda: fs.info(p), "file does not exist")


def check_protocol(fs, host, port, owner):
    c = fs.client
    F, G = 100, 101
    # wstat through p9fs's client: rename and truncate a file it created
    with fs.open("ws", "wb") as f:
        f.write(b"0123456789")
    c._walk(c.ROOT, F, ["ws"])
    st = py9p.Dir(0, 0xFFFF, 0xFFFFFFFF, py9p.Qid(0xFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF),
                  0o600, 0xFFFFFFFF, 0xFFFFFFFF, 4, b"ws2", b"", b"", b"")
    c._wstat(F, [st])
    c._clunk(F)
    assert fs.info("ws2")["size"] == 4
    assert fs.cat_file("ws2") == b"0123"
    fs.rm("ws2")

    # a second attach on the same connection, as another user
    c._attach(F, NOFID, "intruder", "")
    c._walk(F, G, ["secret"])
    expect_rpc_error("intruder opens secret", lambda: c._open(G, OREAD), "permission denied")
    c._clunk(G)
    c._clunk(F)
    assert fs.cat_file("secret") == b"owner only\n"

    # Tflush of a blocked read, with p9fs's own marshalling on its own socket
    c._walk(c.ROOT, F, ["wait"])
    c._open(F, OREAD)
    read = py9p.Fcall(py9p.Tread, tag=7)
    read.fid, read.offset, read.count = F, 0, 100
    c.fd.send(read)
    flush = py9p.Fcall(py9p.Tflush, tag=8)
    flush.oldtag = 7
    c.fd.send(flush)
    r = c.fd.recv()
    assert (r.type, r.tag) == (py9p.Rflush, 8), (r.type, r.tag)
    # The flushed read gets nothing; the next one gets the next record.
    c._walk(c.ROOT, G, ["wait"])
    c._open(G, OWRITE)
    c._write(G, 0, b"record")
    r = c._read(F, 0, 100)
    assert r.data == b"record", r.data
    c._clunk(F)
    c._clunk(G)

    # A blocked read on another connection is answered by a write on this one.
    other = connect(host, port, owner)
    oc = other.client
    oc._walk(oc.ROOT, F, ["wait"])
    oc._open(F, OREAD)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", oc._read(F, 0, 100).data),
                         daemon=True)
    t.start()
    assert fs.cat_file("hello") == b"hello, world\n"
    assert t.is_alive()
    c._walk(c.ROOT, G, ["wait"])
    c._open(G, OWRITE)
    c._write(G, 0, b"cross-connection")
    c._clunk(G)
    t.join(10)
    assert got.get("r") == b"cross-connection", got

    # A malformed frame: a socket has a hang-up, so the host ends the connection at once
    # (it used to skip bytes in silence until a Tversion); a new connection is served.
    sock = c.fd.sock
    sock.sendall(b"\x05\x00\x00\x00\x00")
    sock.settimeout(5)
    try:
        got = sock.recv(100)
    except ConnectionResetError:
        got = b""
    assert got == b"", got
    fresh = connect(host, port, owner)
    assert fresh.cat_file("hello") == b"hello, world\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", required=True)
    ap.add_argument("--owner", required=True)
    a = ap.parse_args()
    host, port = a.tcp.rsplit(":", 1)
    port = int(port)
    socket.setdefaulttimeout(10)
    fs = connect(host, port, a.owner)
    check_fsspec(fs, a.owner)
    print("ok p9fs fsspec", flush=True)
    check_protocol(fs, host, port, a.owner)
    print("ok p9fs protocol", flush=True)
    print("p9fs: all checks passed")


if __name__ == "__main__":
    sys.exit(main())
