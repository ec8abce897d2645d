"""Other clients' latency while runboat digests big webhook bodies (issue 10:
no request may hold the loop for more than ~20 ms). A poller sends /healthz
back to back on one keep-alive connection while one or more clients post big
webhook bodies; prints the poller's latency percentiles, how long each
webhook took to be answered, and runboat's peak RSS. No cluster needed
(the bodies are refused or are pings, before any Kubernetes call).

Usage: RUNBOAT_BIN=build/runboat python test/bench/bench_webhook.py"""

import hashlib
import hmac
import multiprocessing
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "test" / "e2e"))

from conftest import Runboat  # noqa: E402

SECRET = "bench-secret"


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


def many_keys(n):
    return ("{" + ",".join(f'"key{i:016d}":{i % 1000}' for i in range(n)) + "}").encode()


def webhook(body, event="push", signature=None):
    head = (f"POST /webhooks/github HTTP/1.1\r\nHost: bench\r\nX-GitHub-Event: {event}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
    if signature:
        head += f"X-Hub-Signature-256: {signature}\r\n"
    return (head + "\r\n").encode() + body


def vm_hwm_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def poll(port, stop, out):
    """/healthz back to back on one keep-alive connection until stop is
    set; puts the latencies (s) on out. Runs in its own process, so that
    the senders' work does not delay it."""
    from conftest import Conn
    lat = []
    c = Conn(port)
    while not stop.is_set():
        t0 = time.perf_counter()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        assert c.response(timeout=120)[0] == 200
        lat.append(time.perf_counter() - t0)
    c.close()
    out.put(lat)


class LoopWatch:
    """The loop's longest busy stretch: strace records when runboat's loop
    thread enters and leaves epoll_wait; the longest time between leaving
    one and entering the next is the longest the loop did not look at its
    sockets (what every other client waited, at worst). Needs strace."""

    def __init__(self, pid, path):
        self.pid, self.path = pid, path
        self.proc = None
        if shutil.which("strace"):
            self.proc = subprocess.Popen(
                ["strace", "-f", "--seccomp-bpf", "-ttt", "-T", "-e", "trace=epoll_wait,epoll_pwait",
                 "-p", str(pid), "-o", str(path)], stderr=subprocess.DEVNULL)
            time.sleep(0.5)

    def stop(self):
        """Returns (iterations, longest busy ms), or None without strace."""
        if not self.proc:
            return None
        self.proc.terminate()
        self.proc.wait()
        prev_end, longest, n = None, 0.0, 0
        for line in open(self.path):
            m = re.match(r"(\d+)\s+(\d+\.\d+) (?:epoll|<\.\.\. epoll)", line)
            if not m or int(m.group(1)) != self.pid:
                continue
            t = float(m.group(2))
            d = re.search(r"<(\d+\.\d+)>\s*$", line)
            if "resumed" in line:  # the end of a call split around another thread's line
                prev_end = t
                continue
            if prev_end is not None:
                longest = max(longest, t - prev_end)
                n += 1
            prev_end = t + float(d.group(1)) if d else None
        return n, longest * 1e3


def scenario(rb, name, requests_, idle=False):
    """Polls /healthz while the requests are sent (each on its own
    connection, at once); returns when every one is answered."""
    watch = LoopWatch(rb.proc.pid, rb.config.parent / "strace.out")
    stop = multiprocessing.Event()
    out = multiprocessing.Queue()
    poller = multiprocessing.Process(target=poll, args=(rb.port, stop, out))
    poller.start()
    answered = []

    def one(data):
        c = rb.connect()
        t0 = time.perf_counter()
        try:
            c.send(data)
            status = (c.response(timeout=600) or (None,))[0]
        except OSError as e:
            status = type(e).__name__
        answered.append((status, time.perf_counter() - t0))
        c.close()

    time.sleep(0.3)
    if idle:
        time.sleep(2)
    threads = [threading.Thread(target=one, args=(d,)) for d in requests_]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    lat = out.get()
    poller.join()
    busy = watch.stop()
    ms = [x * 1e3 for x in lat]
    hooks = ", ".join(f"{s} in {t * 1e3:.0f} ms" for s, t in answered) or "-"
    loop = f"loop busy max {busy[1]:7.2f} ms" if busy else "loop busy: no strace"
    print(f"{name:<42} {loop} | healthz n={len(ms):6d} p50 {pct(ms, 50):5.2f} "
          f"p99 {pct(ms, 99):6.2f} max {max(ms):8.2f} ms | webhooks: {hooks}", flush=True)


def start(d, **kw):
    """A runboat with room for 4 bodies of 25 MB at once (the default cap on
    buffered bodies is 64 MiB), or without that key for a runboat that
    predates it (to compare)."""
    try:
        return Runboat(d, server_extra="max_buffered_body_bytes = 268435456", **kw)
    except RuntimeError as e:
        if "max_buffered_body_bytes" not in str(e):
            raise
        (d / "old").mkdir()
        return Runboat(d / "old", **kw)


def main():
    big = many_keys(900_000)
    pad = b'{"zen":"bench","hook_id":1,"pad":"' + b"x" * (25_000_000) + b'"}'
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        (d / "a").mkdir()
        rb = start(d / "a")
        print(f"runboat {rb.proc.pid}; bodies: {len(big) / 1e6:.1f} MB of 900k keys, "
              f"{len(pad) / 1e6:.1f} MB ping")
        scenario(rb, "idle", [], idle=True)
        scenario(rb, "1 unsigned 900k-key body (no secret)", [webhook(big)])
        scenario(rb, "4 unsigned 900k-key bodies at once", [webhook(big)] * 4)
        scenario(rb, "1 unsigned 25 MB ping", [webhook(pad, "ping")])
        print(f"peak RSS {vm_hwm_mib(rb.proc.pid):.0f} MiB")
        rb.stop()
        (d / "b").mkdir()
        rb = start(d / "b", extra=f'[github]\nwebhook_secret = "{SECRET}"\n')
        sig = "sha256=" + hmac.new(SECRET.encode(), pad, hashlib.sha256).hexdigest()
        scenario(rb, "secret: 25 MB ping, valid signature", [webhook(pad, "ping", sig)])
        scenario(rb, "secret: 25 MB body, bad signature", [webhook(pad, "ping", "sha256=" + "0" * 64)])
        scenario(rb, "secret: 4 x 25 MB bodies, bad signature",
                 [webhook(pad, "ping", "sha256=" + "0" * 64)] * 4)
        print(f"peak RSS {vm_hwm_mib(rb.proc.pid):.0f} MiB")
        rb.stop()


if __name__ == "__main__":
    main()
