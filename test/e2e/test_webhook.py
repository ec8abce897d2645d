"""The GitHub webhook against hostile and large bodies (issue 10): a large
body is authenticated and parsed off the loop (libuv's thread pool), so that
every other client is answered meanwhile; a client that goes away while its
body is being parsed costs nothing more. Timing figures are in
test/bench/bench_webhook.c and bench_webhook.py, not asserted here."""

import hashlib
import hmac
import json
import socket
import struct
import time
import urllib.parse

import pytest

SECRET = "test-webhook-secret"


def many_keys(n):
    """One flat JSON object of n keys: the review's 21.5 MB, 900k-key body
    (seconds of JSON parsing)."""
    return ("{" + ",".join(f'"key{i:016d}":{i % 1000}' for i in range(n)) + "}").encode()


def request(body, event="push", signature=None, ctype="application/json"):
    head = (f"POST /webhooks/github HTTP/1.1\r\nHost: runboat\r\nX-GitHub-Event: {event}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n")
    if signature:
        head += f"X-Hub-Signature-256: {signature}\r\n"
    return (head + "\r\n").encode(), body


def sign(body, secret=SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def nothing_received(conn):
    """True when the server has sent nothing yet on conn."""
    conn.sock.setblocking(False)
    try:
        conn.sock.recv(1, socket.MSG_PEEK)  # data, or b"" at EOF
        return False
    except BlockingIOError:
        return True
    finally:
        conn.sock.setblocking(True)


def send_all_but_last_byte(conn, head, body):
    conn.send(head + body[:-1])
    # let the server read what was sent, so that the last byte completes
    # the request at once (the parse starts right then)
    time.sleep(0.5)


@pytest.fixture
def unsigned(make_runboat):
    return make_runboat()


@pytest.fixture
def signed(make_runboat):
    return make_runboat(extra=f'[github]\nwebhook_secret = "{SECRET}"\n')


def test_other_clients_are_answered_while_a_big_body_is_parsed(unsigned):
    """No secret configured: one unsigned 21.6 MB body of 900,000 keys. The
    answer to /healthz, sent on another connection right after the body's
    last byte, arrives while the webhook is still being parsed; the webhook
    then gets its own answer (400: not a push payload)."""
    body = many_keys(900_000)
    assert len(body) > 21_000_000
    head, body = request(body)
    hook = unsigned.connect()
    send_all_but_last_byte(hook, head, body)
    hook.send(body[-1:])
    time.sleep(0.05)
    other = unsigned.connect()
    for _ in range(3):
        other.send(b"GET /healthz HTTP/1.1\r\nHost: runboat\r\n\r\n")
        status, _, answer = other.response(timeout=60)
        assert (status, json.loads(answer)) == (200, {"status": "ok"})
    assert nothing_received(hook), "the webhook was answered before /healthz: the loop was blocked"
    status, headers, answer = hook.response(timeout=300)
    assert status == 400, answer
    assert headers["content-type"].startswith("application/json")
    assert "ref" in json.loads(answer)["detail"]


def test_big_bodies_keep_their_meaning(unsigned, signed):
    """What runs in the thread pool answers as the loop would: a big ping
    (JSON and form-encoded) is a pong, a big signed one too, a big body with
    a bad signature is refused, a big form without a payload field is a
    400."""
    pad = "x" * (3 << 20)
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1, "pad": pad}).encode()
    form = urllib.parse.urlencode({"payload": ping.decode()}).encode()
    cases = [
        (unsigned, request(ping, "ping"), 200, "pong"),
        (unsigned, request(form, "ping", ctype="application/x-www-form-urlencoded"), 200, "pong"),
        (unsigned, request(b"nothing=" + pad.encode(), "ping",
                           ctype="application/x-www-form-urlencoded"), 400, "payload field"),
        (signed, request(ping, "ping", sign(ping)), 200, "pong"),
        (signed, request(form, "ping", sign(form), "application/x-www-form-urlencoded"), 200, "pong"),
        (signed, request(ping, "ping", sign(ping, "another secret")), 401, "X-Hub-Signature-256"),
        (signed, request(ping + b" ", "ping", sign(ping)), 401, "X-Hub-Signature-256"),
    ]
    for rb, (head, body), want, detail in cases:
        c = rb.connect()
        c.send(head + body)
        status, _, answer = c.response(timeout=120)
        assert status == want, answer
        assert detail in json.loads(answer)["detail"]
        # the connection stays usable: keep-alive after a pool-parsed body
        c.send(b"GET /healthz HTTP/1.1\r\nHost: runboat\r\n\r\n")
        assert c.response()[0] == 200
        c.close()


def test_clients_that_leave_mid_parse(unsigned):
    """Clients that send a big body and go away at once (every other one with
    a reset rather than a FIN), while earlier ones still wait for the one
    big body decoded at a time: the server stays answering and exits cleanly (the fixture
    checks the exit code, so a sanitizer report fails the test). 8 x 4.8 MB
    stays under the server's cap on buffered bodies (64 MiB by default)."""
    body = many_keys(200_000)
    head, body = request(body)
    for i in range(8):
        c = unsigned.connect()
        c.send(head + body)
        if i % 2:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    other = unsigned.connect()
    other.send(b"GET /healthz HTTP/1.1\r\nHost: runboat\r\n\r\n")
    assert other.response(timeout=60)[0] == 200
    # and one that stays gets its answer
    c = unsigned.connect()
    c.send(head + body)
    status, _, answer = c.response(timeout=300)
    assert status == 400, answer


def test_shutdown_while_a_big_body_is_parsed(unsigned):
    """SIGTERM while a body is in the thread pool: runboat waits for the
    work, drops it and exits 0."""
    head, body = request(many_keys(300_000))
    c = unsigned.connect()
    c.send(head + body)
    time.sleep(0.2)
    assert unsigned.stop() == 0, unsigned.logs()


def test_unsigned_webhook_refused_at_the_headers(signed, unsigned):
    """Secret configured: a delivery without X-Hub-Signature-256 gets 401 from
    its headers alone (the 25 MB it announces are never sent, the connection
    is closed); with the header, the body is read and checked as before.
    Without a secret, the same headers wait for the body."""
    head, _ = request(b"x" * 25_000_000)
    c = signed.connect()
    c.send(head)
    status, headers, answer = c.response(timeout=30)
    assert status == 401, answer
    assert "X-Hub-Signature-256" in json.loads(answer)["detail"]
    assert c.closed_within(10)

    head, _ = request(b"x" * 1000, signature="sha256=" + "0" * 64)
    c = signed.connect()
    c.send(head)
    assert nothing_received_within(c, 1.0), "refused before the body although signed"
    c.send(b"x" * 1000)
    status, _, answer = c.response(timeout=30)
    assert status == 401 and "invalid" in json.loads(answer)["detail"], answer

    head, _ = request(b"x" * 1000)
    c = unsigned.connect()
    c.send(head)
    assert nothing_received_within(c, 1.0), "no secret: the body must be read"
    c.send(b"x" * 1000)
    status, _, answer = c.response(timeout=30)
    assert status == 400, answer


def nothing_received_within(conn, seconds):
    """True when the server sends nothing on conn for that long (the request
    is waiting for its body)."""
    conn.sock.settimeout(seconds)
    try:
        conn.sock.recv(1, socket.MSG_PEEK)  # data, or b"" at EOF
        return False
    except socket.timeout:
        return True
    finally:
        conn.sock.settimeout(10)


def test_payloads_of_too_many_values_are_refused(unsigned):
    """A body whose JSON tree would be huge ("[{},{},...]": 8 M values in 25
    MB, ~2 GiB of tree) is refused with 413 before it is parsed; the same
    count of values inside a string is only a string."""
    c = unsigned.connect()
    head, body = request(b"[" + b"{}," * 2_100_000 + b"{}]")
    c.send(head + body)
    status, _, answer = c.response(timeout=120)
    assert status == 413, answer
    assert "JSON values" in json.loads(answer)["detail"]
    ping = b'{"zen":"' + b"{}," * 2_100_000 + b'","hook_id":1}'
    head, body = request(ping, "ping")
    c.send(head + body)
    status, _, answer = c.response(timeout=120)
    assert status == 200, answer


def test_big_deliveries_wait_their_turn(unsigned):
    """Several big deliveries at once are decoded one after the other, each
    answered; small ones are decoded on the loop and pass them."""
    head, body = request(many_keys(150_000))
    big = [unsigned.connect() for _ in range(5)]
    for c in big:
        c.send(head + body)
    small = unsigned.connect()
    ping = b'{"zen":"small","hook_id":1}'
    h, b = request(ping, "ping")
    small.send(h + b)
    assert small.response(timeout=60)[0] == 200
    assert nothing_received(big[-1]), "the small delivery waited behind the big ones"
    for c in big:
        status, _, answer = c.response(timeout=300)
        assert status == 400 and "ref" in json.loads(answer)["detail"], answer
