#!/usr/bin/python3
"""Stands in for systemd's end of sd_notify(3): binds an AF_UNIX datagram socket and appends
each message to OUT as `pid=<sender pid> <message with \\n as |>`. systemd takes READY=1 only
from the unit's main process (NotifyAccess=main), so the sender's pid is recorded from the
kernel's SCM_CREDENTIALS, not trusted from the message.

    notify_listen.py SOCKET OUT
"""
import os
import socket
import struct
import sys

path, out = sys.argv[1], sys.argv[2]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
os.chmod(path, 0o777)  # foliod runs as the folio user
with open(out, "a", buffering=1) as f:
    while True:
        data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, body in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", body[:12])[0]
        f.write("pid=%d %s\n" % (pid, data.decode("utf-8", "replace").replace("\n", "|")))
