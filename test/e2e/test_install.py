"""Installing runboat as an admin would: cmake --install of the tested build
(the build directory of RUNBOAT_BIN) into a fresh prefix, then the installed
binary run with a configuration that lives somewhere else and names no
kubefiles: it must find the installed default kubefiles."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest
import requests

from conftest import ROOT, free_port, runboat_bin

LIBRARIES = ("libuv", "libcurl", "OpenSSL", "jansson", "libyaml", "llhttp", "wslay", "toml++")
SHA = "0123456789abcdef0123456789abcdef01234567"
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1")


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    build_dir = pathlib.Path(runboat_bin()).resolve().parent
    assert (build_dir / "CMakeCache.txt").is_file(), f"{build_dir} is not a CMake build directory"
    p = tmp_path_factory.mktemp("prefix")
    out = subprocess.run(["cmake", "--install", str(build_dir), "--prefix", str(p)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return p


def run(*args, timeout=30):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def write_config(d, build_extra="", server=""):
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "runboat.toml"
    cfg.write_text(server + '[kubernetes]\nnamespace = "ns"\n[build]\ndomain = "x.test"\n' +
                   build_extra +
                   '\n[[repos]]\nrepo = "acme/.*"\nimage = "registry.test/odoo:16.0"\n')
    return cfg


def test_installed_tree(prefix):
    assert os.access(prefix / "bin" / "runboat", os.X_OK)
    src = sorted(p.name for p in (ROOT / "kubefiles").iterdir())
    installed = sorted(p.name for p in (prefix / "share" / "runboat" / "kubefiles").iterdir())
    assert installed == src
    for name in src:
        assert ((prefix / "share/runboat/kubefiles" / name).read_bytes() ==
                (ROOT / "kubefiles" / name).read_bytes())
    sample = prefix / "share" / "doc" / "runboat" / "runboat.toml.sample"
    assert sample.read_text() == (ROOT / "runboat.toml.sample").read_text()


def test_installed_binary_finds_its_kubefiles(prefix, tmp_path):
    binary = prefix / "bin" / "runboat"
    kubefiles = prefix / "share" / "runboat" / "kubefiles"
    cfg = write_config(tmp_path / "etc")  # no kubefiles key, nothing beside it
    out = run(binary, "--check-config", cfg)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{cfg}: ok"
    # the installed sample, as an admin would try it first
    out = run(binary, "--check-config", prefix / "share/doc/runboat/runboat.toml.sample")
    assert out.returncode == 0, out.stderr

    out = run(binary, "--version")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("runboat ")
    for lib in LIBRARIES:
        assert any(line.startswith(lib + " ") for line in lines), (lib, out.stdout)
    assert f"default kubefiles: {kubefiles}" in lines
    # the run-time versions are those of the system's libraries
    for lib, pc in (("libuv", "libuv"), ("jansson", "jansson"), ("libcurl", "libcurl"),
                    ("OpenSSL", "openssl"), ("libyaml", "yaml-0.1")):
        want = subprocess.run(["pkg-config", "--modversion", pc], capture_output=True,
                              text=True).stdout.strip()
        line = next(line for line in lines if line.startswith(lib + " "))
        assert line.split()[1] == want, (line, want)

    # the build renders from the installed kubefiles
    out = run(binary, "render", "--config", cfg, "--mode", "deployment", "--repo", "acme/addons",
              "--target-branch", "16.0", "--sha", SHA)
    assert out.returncode == 0, out.stderr
    kinds = {o["kind"] for o in json.loads(out.stdout)}
    assert {"Deployment", "Service"} <= kinds, kinds

    # and it runs, from another working directory
    port = free_port()
    cfg_run = write_config(tmp_path / "run", server=f'[server]\nlisten = "127.0.0.1:{port}"\n')
    log = tmp_path / "run.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([str(binary), "--config", str(cfg_run)], stdout=f,
                                stderr=subprocess.STDOUT, cwd=tmp_path,
                                env=dict(ENV, KUBECONFIG=str(tmp_path / "none"),
                                         HOME=str(tmp_path)))
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
                    break
                except requests.ConnectionError:
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
    assert rc == 0, log.read_text()


def test_missing_kubefiles_is_a_clear_error(prefix, tmp_path):
    binary = prefix / "bin" / "runboat"
    cfg = write_config(tmp_path / "etc", 'kubefiles = "my-kubefiles"\n')
    out = run(binary, "--check-config", cfg)
    assert out.returncode == 2
    missing = tmp_path / "etc" / "my-kubefiles"  # relative to the file, not the default
    assert out.stderr.strip() == (
        f'{cfg}:5: build.kubefiles: "{missing}": No such file or directory, '
        "expected the directory of the kubefiles")


def test_no_default_kubefiles_is_a_clear_error(prefix, tmp_path):
    """A copy of the binary with no share/runboat beside it and no build
    tree around it: no default to fall back on, and it says where it looked."""
    configured = subprocess.run(
        ["cmake", "-L", "-N", str(pathlib.Path(runboat_bin()).resolve().parent)],
        capture_output=True, text=True).stdout
    install_prefix = next(line.split("=", 1)[1] for line in configured.splitlines()
                          if line.startswith("CMAKE_INSTALL_PREFIX:"))
    if (pathlib.Path(install_prefix) / "share/runboat/kubefiles").exists():
        pytest.skip(f"runboat is installed in {install_prefix}: its kubefiles are the fallback")
    lone = tmp_path / "lone" / "bin"
    lone.mkdir(parents=True)
    shutil.copy2(prefix / "bin" / "runboat", lone / "runboat")
    cfg = write_config(tmp_path / "etc")
    out = run(lone / "runboat", "--check-config", cfg)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert err.startswith(f"{cfg}:3: build.kubefiles: not set, and no default kubefiles "
                          f"directory found (looked in {tmp_path}/lone/bin/../share/runboat/kubefiles"
                          f" and {install_prefix}/share/runboat/kubefiles)"), err
    assert "cmake --install" in err
