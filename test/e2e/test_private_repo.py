"""Private repositories (issue 13, item 7): a GitHub token given as secret
env (RUNBOAT_GITHUB_TOKEN in [build.secret_env] or a repo's secret_env)
reaches the initialize Job only through the build's Secret, never a
ConfigMap; and the default initialize script, run for real (bash, curl,
tar) with the image's tools stubbed, downloads the commit's tarball from
the fake GitHub, which refuses it without the token, and never prints the
token. The control plane's pod simulator runs no container, so the script
is run here, outside a pod: what is tested is the script and the rendering,
not a Job pod running it."""

import base64
import json
import os
import stat
import subprocess

from conftest import ROOT, runboat_bin
from fake_github import FakeGitHub

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "ghp_s3cretT0kenForPrivateRepo1234567890"

CONFIG = """
[kubernetes]
namespace = "runboat-private-e2e"

[build]
domain = "runboat.test"
kubefiles = "{kubefiles}"

[build.env]
PGHOST = "postgres.runboat-infra"

[[repos]]
repo = "acme/private"
image = "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest"
secret_env = {{ RUNBOAT_GITHUB_TOKEN = "{token}" }}
"""


def render(tmp_path, mode):
    cfg = tmp_path / "runboat.toml"
    cfg.write_text(CONFIG.format(kubefiles=ROOT / "kubefiles", token=TOKEN))
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    p = subprocess.run(
        [runboat_bin(), "render", "--config", str(cfg), "--mode", mode, "--repo", "acme/private",
         "--target-branch", "16.0", "--sha", SHA, "--build-name", "b0123456789abcdef",
         "--format", "json"],
        capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert TOKEN not in p.stderr
    return p.stdout, json.loads(p.stdout)


def test_token_only_in_the_secret(tmp_path):
    for mode in ("deployment", "initialize", "cleanup"):
        text, objs = render(tmp_path, mode)
        b64 = base64.b64encode(TOKEN.encode()).decode()
        # the plain token nowhere; its base64 only in the Secret
        assert TOKEN not in text
        secrets = [o for o in objs if o["kind"] == "Secret"]
        assert len(secrets) == 1
        assert base64.b64decode(secrets[0]["data"]["RUNBOAT_GITHUB_TOKEN"]).decode() == TOKEN
        for o in objs:
            if o["kind"] != "Secret":
                assert b64 not in json.dumps(o), (mode, o["kind"], o["metadata"]["name"])
        if mode == "initialize":
            (job,) = [o for o in objs if o["kind"] == "Job"]
            (c,) = job["spec"]["template"]["spec"]["containers"]
            refs = [e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e]
            assert refs == [secrets[0]["metadata"]["name"]]


def stub_tools(tmp_path):
    """The image's tools as stubs that log their calls; cp of the image's
    venv (absent here) is skipped, any other cp is the real one."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    stubs = {
        "oca_install_addons": 'echo "oca_install_addons $(pwd)" >>"$LOG"',
        "oca_wait_for_postgres": 'echo oca_wait_for_postgres >>"$LOG"',
        "dropdb": 'echo "dropdb $*" >>"$LOG"',
        "manifestoo": 'echo "manifestoo $*" >>"$LOG"; echo addon',
        "odoo": 'echo "odoo $*" >>"$LOG"',
        "cp": 'if [ "$2" = /opt/odoo-venv/. ]; then echo "cp venv" >>"$LOG"; '
              'else exec /bin/cp "$@"; fi',
    }
    for name, body in stubs.items():
        p = bindir / name
        p.write_text(f"#!/bin/bash\n{body}\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return bindir, log


def run_script(tmp_path, gh, token):
    bindir, log = stub_tools(tmp_path)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "stale-from-a-previous-run").write_text("x")
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LOG": str(log),
        "PGDATABASE": "b0123456789abcdef",
        "ADDONS_DIR": str(data / "odoo-addons-dir"),
        "RUNBOAT_DATA_DIR": str(data),
        "RUNBOAT_GIT_REPO": "acme/private",
        "RUNBOAT_GIT_REF": SHA,
        "RUNBOAT_GITHUB_API_URL": gh.url,
    }
    if token:
        env["RUNBOAT_GITHUB_TOKEN"] = token
    p = subprocess.run(["bash", str(ROOT / "kubefiles" / "runboat-initialize.sh")],
                       capture_output=True, text=True, env=env, timeout=120)
    return p, data, log


def test_initialize_script_fetches_with_the_token(tmp_path):
    with FakeGitHub(token=TOKEN) as gh:
        p, data, log = run_script(tmp_path, gh, TOKEN)
        reqs = [r for r in gh.state.requests if "/tarball/" in r["path"]]
    assert p.returncode == 0, p.stdout + p.stderr
    assert TOKEN not in p.stdout and TOKEN not in p.stderr
    assert [r["path"] for r in reqs] == [f"/repos/acme/private/tarball/{SHA}"]
    assert reqs[0]["headers"]["authorization"] == "token " + TOKEN
    assert reqs[0]["status"] == 200
    addons = data / "odoo-addons-dir"
    assert (addons / "README.txt").read_text() == f"acme/private@{SHA}\n"
    assert (addons / "addon" / "__manifest__.py").exists()
    assert not (data / "stale-from-a-previous-run").exists()
    assert (data / "initialized").exists()
    calls = log.read_text()
    assert f"oca_install_addons {addons}" in calls and "--init=addon" in calls


def test_initialize_script_fails_with_a_wrong_token(tmp_path):
    with FakeGitHub(token=TOKEN) as gh:
        p, data, log = run_script(tmp_path, gh, "ghp_wrong")
        reqs = [r for r in gh.state.requests if "/tarball/" in r["path"]]
    assert p.returncode != 0
    assert reqs and reqs[0]["status"] == 401
    assert "ghp_wrong" not in p.stdout and "ghp_wrong" not in p.stderr
    assert not (data / "initialized").exists()
    assert "oca_install_addons" not in (log.read_text() if log.exists() else "")
