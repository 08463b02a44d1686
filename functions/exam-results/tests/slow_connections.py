#!/usr/bin/env python3
"""A bounded slow-connection spike against one running function process.

Opens CONNECTIONS connections in waves, each sending an unfinished request
head (a slowloris client), while a keep-alive client already connected asks
for /healthz; then lets go of them all. Prints the process's resident memory
before, at the peak and after, how many connections the process held and
refused, whether /healthz kept answering, and how long the process took to
close the stalled connections.

    python3 functions/exam-results/tests/slow_connections.py PORT PID [CONNECTIONS]

Bounded: at most CONNECTIONS sockets (default 20000) and about a minute.
"""

import resource
import socket
import sys
import time

HEAD = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: "


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


def healthz(sock: socket.socket) -> int:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def main() -> None:
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    total = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, total + 1000), hard))

    kept = socket.create_connection(("127.0.0.1", port))
    assert healthz(kept) == 200
    before = rss_mib(pid)
    baseline_fds = open_fds(pid)
    print(f"before: rss {before:.1f} MiB, open fds {baseline_fds}")

    slow, refused, failed = [], 0, 0
    started = time.monotonic()
    for i in range(total):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(HEAD)
            slow.append(sock)
        except OSError:
            failed += 1
        if i % 1000 == 999:
            time.sleep(0.05)
    opened = time.monotonic() - started
    time.sleep(1)
    # A refused connection was answered 503 and closed at once.
    for sock in slow:
        sock.setblocking(False)
        try:
            data = sock.recv(512)
            if data.startswith(b"HTTP/1.1 503"):
                refused += 1
        except BlockingIOError:
            pass
        except OSError:
            pass
    held_fds = open_fds(pid)
    peak = rss_mib(pid)
    kept_status = healthz(kept)
    try:
        fresh = socket.create_connection(("127.0.0.1", port), timeout=5)
        fresh.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        fresh_status = fresh.recv(64).split(b" ", 2)[1].decode()
        fresh.close()
    except OSError as err:
        fresh_status = f"error {err}"
    print(
        f"peak: rss {peak:.1f} MiB, open fds {held_fds}, {len(slow)} connections made in "
        f"{opened:.1f} s, {refused} answered 503 overloaded, {failed} failed to connect"
    )
    print(f"during the spike: /healthz on the kept connection {kept_status}, on a new one {fresh_status}")

    # The process closes the stalled connections itself (header timeout).
    waited = time.monotonic()
    while open_fds(pid) > baseline_fds + 2 and time.monotonic() - waited < 60:
        time.sleep(0.25)
    closed_after = time.monotonic() - waited
    for sock in slow:
        sock.close()
    time.sleep(2)
    after = rss_mib(pid)
    print(f"stalled connections closed by the process within {closed_after:.1f} s of the peak")
    print(f"after: rss {after:.1f} MiB, open fds {open_fds(pid)}")


if __name__ == "__main__":
    main()
