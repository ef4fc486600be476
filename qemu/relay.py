#!/usr/bin/env python3
"""Relays Bochs's COM1 (a TCP client that connects once, at power-on) to a unix socket
that 9P clients may connect to, one at a time and again and again.

usage: relay.py HOST:PORT UNIX_PATH
Bochs sends a byte per segment: TCP_NODELAY and TCP_QUICKACK keep round trips short.
Bytes from the machine while no client is connected are dropped."""
import os
import socket
import sys
import threading

host, port = sys.argv[1].rsplit(":", 1)
path = sys.argv[2]

tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((host, int(port)))
tcp.listen(1)
if os.path.exists(path):
    os.unlink(path)
uls = socket.socket(socket.AF_UNIX)
uls.bind(path)
uls.listen(1)

machine, _ = tcp.accept()
machine.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
client = None


def from_machine():
    while True:
        machine.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = machine.recv(65536)
        if not data:
            os._exit(0)
        c = client
        if c is not None:
            try:
                c.sendall(data)
            except OSError:
                pass


threading.Thread(target=from_machine, daemon=True).start()
while True:
    c, _ = uls.accept()
    client = c
    while True:
        try:
            data = c.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        machine.sendall(data)
    client = None
    c.close()
