"""The Dockerfile cannot be built here (no container engine), so it is kept
from rotting by what can be checked: its build stage runs the project's own
scripts with the commands scripts/test.sh builds with; its runtime stage
installs exactly the Debian packages of the libraries the built binary
needs, each one known to apt; nothing is fetched from the network by hand;
it runs as a non-root user; and the build-stage script works on a machine
without the test tools (no Go, no virtualenv)."""

import os
import pathlib
import re
import shlex
import subprocess

import pytest

from conftest import ROOT, runboat_bin

DOCKERFILE = ROOT / "Dockerfile"
# in every Debian image (glibc and the GCC runtime are required packages)
BASE_PACKAGES = {"libc6", "libgcc-s1"}
# linked into the sanitizer build only
SANITIZER_PACKAGES = {"libasan8", "libubsan1"}


def instructions(text):
    """[(INSTRUCTION, arguments)] with continuations joined, comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        cur = ""
    assert not cur, "a continuation line ends the file"
    return out


def stages():
    result = []
    for ins, args in instructions(DOCKERFILE.read_text()):
        if ins == "FROM":
            result.append({"from": args, "ins": []})
        else:
            assert result, f"{ins} before FROM"
            result[-1]["ins"].append((ins, args))
    return result


def runs(stage):
    """The shell commands of a stage's RUN instructions, split at &&."""
    cmds = []
    for ins, args in stage["ins"]:
        if ins == "RUN":
            cmds += [c.strip() for c in args.split("&&")]
    return cmds


def apt_installed(stage):
    pkgs = []
    for cmd in runs(stage):
        words = shlex.split(cmd)
        if "apt-get" in words and "install" in words:
            pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def release_build_commands():
    """The release build of scripts/test.sh: its build() function's cmake
    commands, for build directory "build" with no extra arguments (as the
    "build (release)" step calls it)."""
    text = (ROOT / "scripts" / "test.sh").read_text()
    assert re.search(r'^step "build \(release\)" build build$', text, re.M), \
        "scripts/test.sh no longer builds the release with `build build`"
    body = re.search(r"^build\(\) \{\n(.*?)^\}", text, re.M | re.S).group(1)
    cmds = []
    for line in body.splitlines():
        line = line.strip()
        if "cmake" not in line:
            continue
        for c in line.split("&&"):
            c = re.sub(r"\s*>\s*/dev/null", "", c).replace('"$dir"', "build")
            c = c.replace(' "$@"', "").strip()
            cmds.append(c)
    assert len(cmds) == 2, cmds
    return cmds


def test_two_debian_12_slim_stages():
    st = stages()
    assert len(st) == 2
    assert st[0]["from"] == "debian:12-slim AS build"
    assert st[1]["from"] == "debian:12-slim"


def test_build_stage_runs_the_project_scripts():
    build = stages()[0]
    cmds = runs(build)
    assert "bash scripts/install-deps.sh --build" in cmds
    assert not apt_installed(build), "the build stage installs packages beside install-deps.sh"
    configure, compile_ = release_build_commands()
    assert configure in cmds, (configure, cmds)
    assert compile_ in cmds, (compile_, cmds)
    assert "cmake --install build --prefix /opt/runboat" in cmds
    runtime = stages()[1]["ins"]
    assert ("COPY", "--from=build /opt/runboat /opt/runboat") in runtime


def test_nothing_fetched_by_hand():
    for ins, args in instructions(DOCKERFILE.read_text()):
        assert ins != "ADD", "ADD may fetch URLs: use COPY"
        if ins == "RUN":
            assert not re.search(r"\b(curl|wget)\b|https?://", args), args


def test_runs_as_non_root():
    users = [args for ins, args in stages()[1]["ins"] if ins == "USER"]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    # numeric, so that Kubernetes' runAsNonRoot can check it
    assert uid.isdigit() and int(uid) != 0, users[-1]
    ep = [args for ins, args in stages()[1]["ins"] if ins == "ENTRYPOINT"]
    assert ep == ['["/opt/runboat/bin/runboat"]']


def needed_packages(binary):
    """The Debian packages of the shared libraries binary links directly."""
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn.stdout)
    assert needed
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    pkgs = set()
    for lib in needed:
        real = os.path.realpath(paths[lib])
        candidates = [real]
        if real.startswith("/usr/lib/"):
            candidates.append(real[4:])
        elif real.startswith("/lib/"):
            candidates.append("/usr" + real)
        for c in candidates:
            out = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
            if out.returncode == 0:
                pkgs.add(out.stdout.split(":")[0])
                break
        else:
            pytest.fail(f"{lib} ({real}) belongs to no Debian package")
    return pkgs


def test_runtime_packages_are_the_linked_libraries():
    release = ROOT / "build" / "runboat"
    binary = str(release) if release.exists() else runboat_bin()
    need = needed_packages(binary) - BASE_PACKAGES - SANITIZER_PACKAGES
    installed = apt_installed(stages()[1])
    assert len(installed) == len(set(installed)), installed
    missing = need - set(installed)
    assert not missing, f"the runtime stage lacks {sorted(missing)}"
    extra = set(installed) - need - {"ca-certificates"}
    assert not extra, f"the runtime stage installs more than runtime libraries: {sorted(extra)}"
    assert not [p for p in installed if p.endswith("-dev")]


def test_every_package_is_known_to_apt():
    names = apt_installed(stages()[1])
    text = (ROOT / "scripts" / "install-deps.sh").read_text()
    build = re.search(r"^build_packages=\((.*?)\)", text, re.M | re.S).group(1).split()
    out = subprocess.run(["apt-cache", "show", "--no-all-versions"] + names + build,
                         capture_output=True, text=True)
    known = set(re.findall(r"^Package: (\S+)$", out.stdout, re.M))
    unknown = [n for n in names + build if n not in known]
    assert not unknown and out.returncode == 0, f"apt knows no package {unknown}: {out.stderr}"


def test_dockerignore_keeps_build_trees_out():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in lines and "build*/" in lines
    # what the build needs is not ignored
    for needed in ("src", "test", "web", "kubefiles", "vendor", "cmake", "scripts"):
        assert needed not in lines and needed + "/" not in lines


def test_build_deps_script_needs_no_test_tools(tmp_path):
    """The build stage has no Go and no venv: install-deps.sh --build must
    not look for them. Run where every build package is already installed
    (as on any machine that ran install-deps.sh), so nothing is installed."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "RUNBOAT_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "install-deps.sh"), "--build"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "installing" not in out.stdout, out.stdout
    assert not (tmp_path / "cache").exists()
