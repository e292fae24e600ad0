#!/usr/bin/env python3
"""A minimal client of corral's guest-agent protocol, for benches/vm.sh.

Frames (crates/guest/src/proto.rs): u32 BE length of what follows, a kind byte, u32 BE
session, then JSON (Request/Response/Exit) or raw bytes (Stdin/Stdout/Stderr).

  boot AGENT_SOCK [--t0-ns NS --boot-ms-file F] [--hostname H] [--timeout S]
      The hand-written side of benchmark 1: connect to a QEMU's agent socket (retrying until
      QEMU has made it), send Boot, wait for Ready, run `true` as session 0, wait for its Exit,
      send Shutdown and wait for its answer. With --t0-ns (CLOCK_REALTIME nanoseconds of the
      QEMU start), appends `boot_ms N` (QEMU start -> Ready) to the --boot-ms-file.
  ping CTL_SOCK N
      N Ping requests over one connection to a VM monitor's socket; prints the round trips.
  exec CTL_SOCK N
      N Exec `true` requests over one connection to a VM monitor's socket (Exec -> Exit).
Timings are printed as one JSON object: {"what": ..., "ms": [...]}.
"""
import json
import os
import socket
import struct
import sys
import time

REQUEST, RESPONSE, STDIN, STDOUT, STDERR, EXIT = 1, 2, 3, 4, 5, 6
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Channel:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, kind, session, obj):
        payload = json.dumps(obj).encode()
        self.sock.sendall(struct.pack(">IBI", 5 + len(payload), kind, session) + payload)

    def recv(self):
        """The next frame as (kind, session, payload bytes)."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    kind, session = struct.unpack(">BI", self.buf[4:9])
                    payload = self.buf[9 : 4 + n]
                    self.buf = self.buf[4 + n :]
                    return kind, session, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the peer closed the connection")
            self.buf += chunk

    def wait(self, session, kinds):
        """Frames of `session` until one of `kinds`; an Error response ends the program."""
        while True:
            kind, s, payload = self.recv()
            if s != session:
                continue
            if kind == RESPONSE:
                r = json.loads(payload)
                if r.get("op") == "error":
                    sys.exit(f"vm_agent_client: the agent refused: {r}")
            if kind in kinds:
                return kind, json.loads(payload) if kind in (RESPONSE, EXIT) else payload


def connect(path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return Channel(s)
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def boot(args):
    path = args[0]
    opts = dict(zip(args[1::2], args[2::2]))
    ch = connect(path, float(opts.get("--timeout", "90")))
    ch.send(REQUEST, 0, {
        "op": "boot",
        "version": 1,
        "hostname": opts.get("--hostname", "bench"),
        "root": {"image_serial": "image", "upper_serial": "upper"},
        "time_ms": time.time_ns() // 1_000_000,
    })
    kind, ready = ch.wait(0, (RESPONSE,))
    if ready.get("op") != "ready":
        sys.exit(f"vm_agent_client: expected ready, got {ready}")
    if "--t0-ns" in opts:
        with open(opts["--boot-ms-file"], "a") as f:
            print(f"boot_ms {(time.time_ns() - int(opts['--t0-ns'])) / 1e6:.0f}", file=f)
    ch.send(REQUEST, 0, {"op": "exec", "argv": ["true"], "env": [PATH_ENV]})
    kind, ex = ch.wait(0, (EXIT,))
    if ex.get("code") != 0:
        sys.exit(f"vm_agent_client: true exited {ex}")
    ch.send(REQUEST, 0, {"op": "shutdown"})
    # Ok, or the end of the stream if QEMU powers off first.
    try:
        ch.wait(0, (RESPONSE,))
    except EOFError:
        pass


def loop(args, what):
    ch = connect(args[0], 5)
    n = int(args[1])
    ms = []
    for i in range(n):
        session = i + 1
        t = time.perf_counter_ns()
        if what == "ping":
            ch.send(REQUEST, session, {"op": "ping"})
            ch.wait(session, (RESPONSE,))
        else:
            ch.send(REQUEST, session, {"op": "exec", "argv": ["true"], "env": [PATH_ENV]})
            kind, ex = ch.wait(session, (EXIT,))
            if ex.get("code") != 0:
                sys.exit(f"vm_agent_client: true exited {ex}")
        ms.append((time.perf_counter_ns() - t) / 1e6)
    print(json.dumps({"what": what, "ms": ms}))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("boot", "ping", "exec"):
        sys.exit(__doc__)
    if sys.argv[1] == "boot":
        boot(sys.argv[2:])
    else:
        loop(sys.argv[2:], sys.argv[1])


if __name__ == "__main__":
    main()
