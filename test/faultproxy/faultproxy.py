#!/usr/bin/env python3
"""A fault-injecting TCP proxy for the tests (Python 3 stdlib only, asyncio).

It sits between a client (runboat) and a server (the kube-apiserver) and
forwards bytes untouched, TLS included: a copy of a kubeconfig whose server
is https://127.0.0.1:<proxy port> works as long as the server's certificate
covers 127.0.0.1. On demand it breaks the path the ways networks and servers
do:

  idle_drop(after, mode)   a connection that carried no byte for `after` s
                           is dropped. mode "silent" (default): forwarding
                           stops and the connection is forgotten WITHOUT a
                           FIN or RST to the client, which keeps a dead
                           connection (a NAT or load balancer that forgot
                           the flow, the production "quiet spell"); the
                           server side is closed. "fin": closed normally (a
                           server's idle time-out). "rst": reset.
  drop_all(mode)           the same, at once, for every open connection.
  blackhole(drop=False)    nothing is forwarded any more, on existing and
                           new connections (new ones are accepted and held).
                           After clear() everything held flows again, as a
                           network partition shorter than TCP's time-outs
                           loses nothing. drop=True: the connections open
                           now are dead for good (silently, as above).
  reset(after_bytes, count) once the client sent a request (application
                           data) on a connection, RST to the client after
                           `after_bytes` more bytes from the server (the
                           server side is closed); `count` connections, or
                           every one until cleared (count None).
  delay(seconds)           every byte from the server reaches the client
                           `seconds` late (the first byte of every answer is
                           late; throughput is unchanged).
  refuse(mode)             new connections are refused: mode "closed" stops
                           listening (connect() gets ECONNREFUSED), "rst"
                           accepts and resets at once.
  clear()                  every fault off; held data flows; refused: the
                           port listens again. Dead connections stay dead.

"Silent" cannot stop the proxy's kernel from ACKing what the client sends
(and its TCP keepalive probes): the client sees no error at all, only
silence, so it must notice at the protocol level (HTTP/2 PING, a deadline
for the first byte of an answer). Dead connections are read and discarded;
one the client closes is closed; after `dead_max_age` (900 s, about when
Linux gives up retransmitting) one is reset.

TLS awareness is minimal and read-only: the records the client sends are
framed (5-byte headers) to tell a request (application data, type 23) from
the handshake; nothing is decrypted or changed.

Use it from Python (it runs its own asyncio loop in a thread):

    with FaultProxy("127.0.0.1", 6443) as p:
        p.port ...; p.idle_drop(2); p.clear(); p.stats(); p.events()

or as a program with an HTTP control API (JSON):

    python3 faultproxy.py --upstream 127.0.0.1:6443 [--listen 127.0.0.1:0]
                          [--control 127.0.0.1:0]
    (prints "proxy PORT control PORT" once listening)

    POST /faults  {"idle_drop": {"after": 2, "mode": "silent"} | null,
                   "blackhole": {"drop": false} | null,
                   "reset": {"after_bytes": 1000, "count": 1} | null,
                   "delay": {"seconds": 2} | null,
                   "refuse": {"mode": "closed"} | null}   (any subset; null: off)
    POST /drop    {"mode": "silent"}      every open connection, now
    POST /clear
    GET  /stats   counters and the faults in force
    GET  /events  what happened, oldest first ({"t", "conn", "what"})
"""

import argparse
import array
import asyncio
import collections
import fcntl
import json
import socket
import struct
import sys
import termios
import threading
import time

BUF = 65536
TLS_HANDSHAKE = 0x16
TLS_APPDATA = 0x17
MODES = ("silent", "fin", "rst")


def rst(writer):
    """Closes the transport with a TCP RST (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def flushed(writer, timeout=1.0):
    """Waits until the kernel has sent (and the peer acknowledged) what was
    written, so that a reset right after loses none of it (SO_LINGER 0
    discards the send queue)."""
    await writer.drain()
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    deadline = time.monotonic() + timeout
    buf = array.array("i", [0])
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)
        except OSError:
            return
        if buf[0] == 0:
            return
        await asyncio.sleep(0.005)


class Records:
    """Frames the TLS records of one direction (or sees plain bytes) to say
    whether a chunk carries application data."""

    def __init__(self):
        self.tls = None  # unknown until the first byte
        self.need = 0  # bytes left in the current record's body
        self.kind = 0
        self.hdr = b""

    def feed(self, data):
        """True when data holds application data (any byte, if not TLS)."""
        if self.tls is None and data:
            self.tls = data[0] == TLS_HANDSHAKE
        if not self.tls:
            return bool(data)
        app = False
        i, n = 0, len(data)
        while i < n:
            if self.need:
                take = min(self.need, n - i)
                if self.kind == TLS_APPDATA:
                    app = True
                self.need -= take
                i += take
                continue
            take = min(5 - len(self.hdr), n - i)
            self.hdr += data[i:i + take]
            i += take
            if len(self.hdr) == 5:
                self.kind = self.hdr[0]
                self.need = struct.unpack("!H", self.hdr[3:5])[0]
                self.hdr = b""
                if self.kind == TLS_APPDATA:
                    app = True
        return app


class Conn:
    """One proxied connection: the client side, the server side, the two
    pumps, and what the faults need to know about it."""

    def __init__(self, proxy, cid, creader, cwriter):
        self.proxy = proxy
        self.id = cid
        self.creader, self.cwriter = creader, cwriter
        self.ureader = self.uwriter = None
        self.state = "new"  # new, open, dead, closed
        self.created = self.last = time.monotonic()
        self.records = Records()
        self.counting = False  # reset fault: counting server bytes
        self.counted = 0
        self.tasks = []
        self.bytes_up = self.bytes_down = 0

    def touch(self):
        self.last = time.monotonic()

    # ---- endings ----

    def _stop_pumps(self):
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me:
                t.cancel()

    def _close_upstream(self):
        if self.uwriter is not None:
            self.uwriter.transport.abort()

    def kill(self, mode, why):
        """Ends the connection: "silent" (the client keeps a dead one),
        "fin" or "rst"."""
        if self.state in ("dead", "closed"):
            return
        self.proxy.event(self.id, f"{why}: {mode} ({self.bytes_up} bytes up, "
                         f"{self.bytes_down} down so far)")
        self._stop_pumps()
        self._close_upstream()
        if mode == "silent":
            self.state = "dead"
            self.proxy.stats_["dead"] += 1
            self.tasks = [asyncio.ensure_future(self._graveyard())]
            return
        self.state = "closed"
        if mode == "rst":
            rst(self.cwriter)
        else:
            self.cwriter.close()

    async def _graveyard(self):
        """A dead connection: what the client sends is read and discarded;
        when it closes, so do we; after dead_max_age it is reset."""
        deadline = time.monotonic() + self.proxy.dead_max_age
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.proxy.event(self.id, "dead too long: rst")
                    rst(self.cwriter)
                    break
                try:
                    data = await asyncio.wait_for(self.creader.read(BUF), min(left, 60))
                except asyncio.TimeoutError:
                    continue
                if not data:
                    self.proxy.event(self.id, "dead connection closed by the client")
                    self.cwriter.close()
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self.state = "closed"
            self.proxy.conns.pop(self.id, None)

    # ---- life ----

    async def run(self):
        p = self.proxy
        try:
            await p.wait_flowing(self)
            if self.state != "new":
                return
            try:
                self.ureader, self.uwriter = await asyncio.wait_for(
                    asyncio.open_connection(p.upstream_host, p.upstream_port), 10)
            except (OSError, asyncio.TimeoutError) as e:
                p.event(self.id, f"upstream connect failed ({e!r}): rst")
                p.stats_["upstream_failed"] += 1
                self.state = "closed"
                rst(self.cwriter)
                return
            if self.state != "new":  # killed while connecting
                self._close_upstream()
                return
            self.state = "open"
            self.touch()
            self.tasks = [asyncio.ensure_future(self._up()), asyncio.ensure_future(self._down())]
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            if self.state in ("new", "open"):
                self.state = "closed"
                self._close_upstream()
                self.cwriter.close()
            if self.state != "dead":
                p.conns.pop(self.id, None)
                p.event(self.id, f"closed after {time.monotonic() - self.created:.1f}s, "
                        f"{self.bytes_up} bytes up, {self.bytes_down} down")

    async def _up(self):
        """client -> server"""
        p = self.proxy
        try:
            while True:
                data = await self.creader.read(BUF)
                if not data:
                    if self.uwriter.can_write_eof():
                        self.uwriter.write_eof()
                    return
                self.touch()
                if self.records.feed(data) and p.reset_after is not None and not self.counting:
                    self.counting = True
                    self.counted = 0
                await p.wait_flowing(self)
                if self.state != "open":
                    return
                self.bytes_up += len(data)
                p.stats_["bytes_up"] += len(data)
                self.uwriter.write(data)
                await self.uwriter.drain()
        except (ConnectionError, OSError):
            # the client reset: so does the server side
            self._close_upstream()
        except asyncio.CancelledError:
            raise

    async def _down(self):
        """server -> client, through a delay line"""
        p = self.proxy
        line = asyncio.Queue(maxsize=64)
        writer = asyncio.ensure_future(self._down_writer(line))
        self.tasks.append(writer)
        try:
            while True:
                try:
                    data = await self.ureader.read(BUF)
                except (ConnectionError, OSError):
                    data = None  # the server reset
                if data:
                    self.touch()
                await line.put((time.monotonic() + p.delay_s, p.generation, data))
                if not data:
                    break
            await writer
        except asyncio.CancelledError:
            writer.cancel()
            raise

    async def _down_writer(self, line):
        p = self.proxy
        try:
            while True:
                due, gen, data = await line.get()
                while gen == p.generation and time.monotonic() < due and self.state == "open":
                    await asyncio.sleep(min(0.05, max(0.0, due - time.monotonic())))
                await p.wait_flowing(self)
                if self.state != "open":
                    return
                if data is None:  # the server reset: so do we
                    p.event(self.id, "server reset the connection")
                    self.state = "closed"
                    rst(self.cwriter)
                    return
                if not data:
                    if self.cwriter.can_write_eof():
                        self.cwriter.write_eof()
                    return
                if self.counting and p.reset_after is not None:
                    left = p.reset_after - self.counted
                    if len(data) >= left and p.take_reset():
                        if left > 0:
                            self.cwriter.write(data[:left])
                            await flushed(self.cwriter)
                        p.stats_["resets"] += 1
                        p.event(self.id, f"reset after {p.reset_after} bytes of the answer")
                        self.state = "closed"
                        self._stop_pumps()
                        self._close_upstream()
                        rst(self.cwriter)
                        return
                    self.counted += len(data)
                self.bytes_down += len(data)
                p.stats_["bytes_down"] += len(data)
                self.cwriter.write(data)
                await self.cwriter.drain()
        except (ConnectionError, OSError):
            self._close_upstream()


class FaultProxy:
    """The proxy. Methods are called from any thread (they run on the
    proxy's loop and return once the change is in force)."""

    def __init__(self, upstream_host, upstream_port, listen_host="127.0.0.1", listen_port=0,
                 control_port=None, dead_max_age=900.0):
        self.upstream_host, self.upstream_port = upstream_host, int(upstream_port)
        self.listen_host, self.port = listen_host, int(listen_port)
        self.control_port = control_port
        self.dead_max_age = dead_max_age
        self.loop = None
        self.thread = None
        self.server = None
        self.control_server = None
        self.conns = {}
        self.next_id = 1
        self.events_ = collections.deque(maxlen=2000)
        self.t0 = time.monotonic()
        self.stats_ = collections.Counter()
        # faults
        self.idle_after = None
        self.idle_mode = "silent"
        self.holding = False
        self.flowing = None  # asyncio.Event, set when not blackholed
        self.reset_after = None
        self.reset_left = None
        self.delay_s = 0.0
        self.generation = 0  # bumped by clear(): pending delays end
        self.refusing = None

    # ---- thread plumbing ----

    def start(self):
        ready = threading.Event()
        failure = []

        def main():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._start())
            except Exception as e:  # noqa: BLE001 - reported to start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._shutdown())
            self.loop.close()

        self.thread = threading.Thread(target=main, name="faultproxy", daemon=True)
        self.thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self):
        if self.loop and self.thread and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _call(self, fn, *args):
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    async def _start(self):
        self.flowing = asyncio.Event()
        self.flowing.set()
        await self._listen()
        self.checker = asyncio.ensure_future(self._idle_checker())
        if self.control_port is not None:
            self.control_server = await asyncio.start_server(
                self._control, self.listen_host, int(self.control_port))
            self.control_port = self.control_server.sockets[0].getsockname()[1]

    async def _listen(self):
        self.server = await asyncio.start_server(self._accept, self.listen_host, self.port,
                                                 reuse_address=True, backlog=256)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _shutdown(self):
        self.checker.cancel()
        for srv in (self.server, self.control_server):
            if srv is not None:
                srv.close()
        tasks = []
        for c in list(self.conns.values()):
            for t in c.tasks:
                t.cancel()
                tasks.append(t)
            c._close_upstream()
            c.cwriter.transport.abort()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # ---- the proxy ----

    def event(self, cid, what):
        self.events_.append({"t": round(time.monotonic() - self.t0, 3), "conn": cid, "what": what})

    async def _accept(self, reader, writer):
        self.stats_["accepted"] += 1
        cid = self.next_id
        self.next_id += 1
        if self.refusing == "rst":
            self.stats_["refused"] += 1
            self.event(cid, "refused: rst")
            rst(writer)
            return
        c = Conn(self, cid, reader, writer)
        self.conns[cid] = c
        self.event(cid, "accepted")
        try:
            await c.run()
        except asyncio.CancelledError:
            pass  # the proxy stops

    async def wait_flowing(self, conn):
        while not self.flowing.is_set() and conn.state in ("new", "open"):
            try:
                await asyncio.wait_for(self.flowing.wait(), 0.2)
            except asyncio.TimeoutError:
                pass

    def take_reset(self):
        if self.reset_left is None:
            return True
        if self.reset_left <= 0:
            return False
        self.reset_left -= 1
        if self.reset_left == 0:
            self.reset_after = None
        return True

    async def _idle_checker(self):
        while True:
            await asyncio.sleep(0.1)
            if self.idle_after is None:
                continue
            now = time.monotonic()
            for c in list(self.conns.values()):
                if c.state == "open" and now - c.last >= self.idle_after:
                    self.stats_["idle_dropped"] += 1
                    c.kill(self.idle_mode, f"idle {now - c.last:.1f}s")

    # ---- faults (on the loop) ----

    def _set_idle_drop(self, after, mode):
        assert mode in MODES, mode
        self.idle_after = None if after is None else float(after)
        self.idle_mode = mode
        self.event(0, f"fault idle_drop after={after} mode={mode}")

    def _drop_all(self, mode):
        assert mode in MODES, mode
        n = 0
        for c in list(self.conns.values()):
            if c.state in ("new", "open"):
                c.kill(mode, "drop_all")
                n += 1
        return n

    def _set_blackhole(self, on, drop):
        if on:
            self.flowing.clear()
            if drop:
                self._drop_all("silent")
        else:
            self.flowing.set()
        self.holding = on
        self.event(0, f"fault blackhole {'on' if on else 'off'}{' drop' if on and drop else ''}")

    def _set_reset(self, after_bytes, count):
        self.reset_after = None if after_bytes is None else int(after_bytes)
        self.reset_left = None if count is None else int(count)
        for c in self.conns.values():
            c.counting = False
        self.event(0, f"fault reset after_bytes={after_bytes} count={count}")

    def _set_delay(self, seconds):
        self.delay_s = float(seconds or 0)
        if not self.delay_s:
            self.generation += 1
        self.event(0, f"fault delay {self.delay_s}s")

    async def _set_refuse(self, mode):
        if mode is not None:
            assert mode in ("closed", "rst"), mode
        if mode == "closed" and self.server is not None and self.refusing != "closed":
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        if mode != "closed" and self.server is None:
            await self._listen()
        self.refusing = mode
        self.event(0, f"fault refuse {mode}")

    def _clear(self):
        self.idle_after = None
        self._set_blackhole(False, False)
        self.reset_after = self.reset_left = None
        self.delay_s = 0.0
        self.generation += 1
        self.event(0, "clear")

    def _stats(self):
        s = dict(self.stats_)
        s["open"] = sum(1 for c in self.conns.values() if c.state in ("new", "open"))
        s["dead_now"] = sum(1 for c in self.conns.values() if c.state == "dead")
        s["faults"] = self._faults()
        now = time.monotonic()
        s["conns"] = [{"id": c.id, "state": c.state, "age": round(now - c.created, 1),
                       "idle": round(now - c.last, 1), "up": c.bytes_up, "down": c.bytes_down}
                      for c in self.conns.values()]
        return s

    def _faults(self):
        f = {}
        if self.idle_after is not None:
            f["idle_drop"] = {"after": self.idle_after, "mode": self.idle_mode}
        if self.holding:
            f["blackhole"] = True
        if self.reset_after is not None:
            f["reset"] = {"after_bytes": self.reset_after, "count": self.reset_left}
        if self.delay_s:
            f["delay"] = {"seconds": self.delay_s}
        if self.refusing:
            f["refuse"] = {"mode": self.refusing}
        return f

    # ---- public API (any thread) ----

    @property
    def address(self):
        return f"{self.listen_host}:{self.port}"

    def idle_drop(self, after, mode="silent"):
        """Drops connections idle for `after` seconds (None: off)."""
        self._call(self._set_idle_drop, after, mode)

    def drop_all(self, mode="silent"):
        """Drops every open connection now; returns how many."""
        return self._call(self._drop_all, mode)

    def blackhole(self, on=True, drop=False):
        self._call(self._set_blackhole, on, drop)

    def reset(self, after_bytes, count=1):
        """RST to the client after_bytes into the server's answer to the
        next request, on `count` connections (None: all until cleared;
        after_bytes None: off)."""
        self._call(self._set_reset, after_bytes, count)

    def delay(self, seconds):
        self._call(self._set_delay, seconds)

    def refuse(self, mode="closed"):
        """Refuses new connections (mode None: accept again)."""
        asyncio.run_coroutine_threadsafe(self._set_refuse(mode), self.loop).result(10)

    def clear(self):
        """Every fault off (the listener is back if it was closed)."""
        self._call(self._clear)
        self.refuse(None)

    def stats(self):
        return self._call(self._stats)

    def events(self):
        return self._call(lambda: list(self.events_))

    def apply(self, faults):
        """Applies a JSON fault description (see the module's docstring)."""
        for k, v in faults.items():
            if k == "idle_drop":
                self.idle_drop(None if v is None else v["after"], (v or {}).get("mode", "silent"))
            elif k == "blackhole":
                self.blackhole(v is not None, bool((v or {}).get("drop")))
            elif k == "reset":
                self.reset(None if v is None else v["after_bytes"], (v or {}).get("count", 1))
            elif k == "delay":
                self.delay(0 if v is None else v["seconds"])
            elif k == "refuse":
                self.refuse(None if v is None else v.get("mode", "closed"))
            else:
                raise ValueError(f"unknown fault {k!r}")

    # ---- HTTP control ----

    async def _control(self, reader, writer):
        status, obj = 200, None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if len(head) > 8192:
                raise ValueError("headers too large")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            if not 0 <= length <= 65536:
                raise ValueError("body too large")
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            payload = json.loads(body) if body else {}
            obj = await self._control_do(method, path, payload)
            if obj is None:
                status, obj = 404, {"error": "not found"}
        except (ValueError, KeyError, TypeError, AssertionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            status, obj = 400, {"error": repr(e)}
        except asyncio.TimeoutError:
            writer.close()
            return
        data = json.dumps(obj).encode()
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % (status, b"OK" if status == 200 else b"Error",
                                                     len(data)) + data)
        try:
            await writer.drain()
        finally:
            writer.close()

    async def _control_do(self, method, path, payload):
        loop = asyncio.get_running_loop()
        if method == "GET" and path == "/stats":
            return self._stats()
        if method == "GET" and path == "/events":
            return list(self.events_)
        if method == "POST" and path == "/clear":
            self._clear()
            await self._set_refuse(None)
            return {"ok": True}
        if method == "POST" and path == "/drop":
            return {"dropped": self._drop_all(payload.get("mode", "silent"))}
        if method == "POST" and path == "/faults":
            # the public methods block on the loop: run them off it
            await loop.run_in_executor(None, self.apply, payload)
            return {"ok": True, "faults": self._faults()}
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the server")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT of the control API")
    args = ap.parse_args()
    uh, _, up = args.upstream.rpartition(":")
    lh, _, lp = args.listen.rpartition(":")
    ch, _, cp = args.control.rpartition(":")
    if ch != lh:
        sys.exit("--control must be on the same host as --listen")
    p = FaultProxy(uh, int(up), lh, int(lp), control_port=int(cp)).start()
    print(f"proxy {p.port} control {p.control_port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    p.stop()


if __name__ == "__main__":
    main()
