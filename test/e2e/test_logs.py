"""[server] log_format = "json": everything runboat writes on stderr is one
JSON object per line, whatever the messages carry (hostile request paths,
bytes that are not UTF-8), from the warnings of the configuration's load to
the shutdown; and a wrong log_format is refused by --check-config."""

import json
import subprocess

import requests

from conftest import runboat_bin
from lifecycle_helpers import (  # noqa: F401 - fixtures
    ADMIN,
    github,
    make_env,
    push_payload,
    sha,
    wait_for,
)


def json_lines(text_bytes):
    """Every line, parsed strictly (UTF-8, one JSON object); fails on any
    other line."""
    records = []
    for raw in text_bytes.splitlines():
        line = raw.decode("utf-8")  # strict: invalid UTF-8 fails here
        rec = json.loads(line)
        assert isinstance(rec, dict), line
        assert set(rec) >= {"time", "level", "msg"}, line
        assert rec["level"] in ("debug", "info", "warn", "error"), line
        records.append(rec)
    assert records
    return records


def test_json_logs_without_cluster(make_runboat):
    # no webhook secret: the load warns, before the format is known
    rb = make_runboat(server_extra='log_format = "json"\naccess_log = true')
    c = rb.connect()
    # a path of bytes that are not UTF-8, quotes, backslashes, a C1 control
    c.send(b'GET /x\xff\xfe"\\%0a\xc2\x85?q=\xc3\x28 HTTP/1.1\r\nHost: t\r\n\r\n')
    assert c.response()[0] == 400
    c.close()
    c = rb.connect()
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert c.response()[0] == 200
    c.close()
    requests.post(rb.url("/webhooks/github"), data=b"\x00\x01{", headers={
        "X-GitHub-Event": "push\x7f", "Content-Type": "application/json"})
    # a delivery id (logged as sent) of bytes that are not UTF-8, for a
    # repository that is not configured (2xx, nothing done, logged)
    r = requests.post(rb.url("/webhooks/github"), data=json.dumps(push_payload("16.0", sha(1))),
                      headers={"X-GitHub-Event": "push", "Content-Type": "application/json",
                               "X-GitHub-Delivery": b'd\xff\xfe"\\\xc3\x28\xe2\x80\xa8'})
    assert r.status_code == 200, r.text
    assert rb.stop() == 0
    recs = json_lines(open(rb.log_path, "rb").read())
    msgs = [r["msg"] for r in recs]
    assert any("webhook secret" in m for m in msgs), msgs  # held during the load
    assert any(m.startswith('webhook d\ufffd\ufffd"\\\ufffd(\u2028: ') for m in msgs), msgs
    assert any(r.get("kind") == "access" and r["status"] == 400 for r in recs), recs
    assert any(r.get("kind") == "access" and r["path"] == "/healthz" and r["status"] == 200
               for r in recs)
    assert msgs[-1] == "shutdown complete"


def test_json_logs_through_a_lifecycle(make_env):
    env = make_env(server_extra='log_format = "json"')
    r = env.webhook("push", push_payload("16.0", sha(41)))
    assert r.status_code == 202, r.text
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(41), 20, "the build")
    env.wait_status(b["name"], "started", 90)
    r = env.delete(f"/api/v1/builds/{b['name']}")
    assert r.status_code in (200, 202), r.text
    wait_for(lambda: all(x["name"] != b["name"] for x in env.builds()), 90, "the undeploy")
    assert env.rb.stop() == 0
    recs = json_lines(open(env.rb.log_path, "rb").read())
    assert len(recs) > 5
    assert any(r.get("kind") == "access" for r in recs)


def test_check_config_refuses_an_unknown_format(tmp_path):
    cfg = tmp_path / "runboat.toml"
    cfg.write_text('[server]\nlog_format = "logfmt"\n'
                   '[kubernetes]\nnamespace = "ns"\n[build]\ndomain = "x.test"\n')
    out = subprocess.run([runboat_bin(), "--check-config", str(cfg)], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (f'{cfg}:2: server.log_format: "logfmt" is not a log format, '
                                  'expected "text" or "json"')
