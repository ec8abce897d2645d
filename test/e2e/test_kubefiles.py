"""The kubefiles as the real kube-apiserver sees them: `runboat render`
renders every mode of the default kubefiles (through the controller's code
path), and every object must pass a server-side apply dry-run. Also the
render command's own behaviour: formats, refusals, errors."""

import json
import os
import subprocess
import textwrap

import pytest

from conftest import ROOT, runboat_bin
from kube_helpers import kube  # noqa: F401  (fixture)

NAMESPACE = "runboat-kubefiles-e2e"
SHA = "0123456789abcdef0123456789abcdef01234567"
MODES = ["deployment", "initialize", "start", "stop", "cleanup"]

CONFIG = """
[kubernetes]
namespace = "{namespace}"

[build]
domain = "runboat.test"
kubefiles = "{kubefiles}"

[build.env]
PGHOST = "postgres.runboat-infra"
PGUSER = "runboat"

[build.secret_env]
PGPASSWORD = "p\\"a:s s#w\\u2028d"

[build.template_vars]
storageClassName = "standard"

[[repos]]
repo = "oca/.*"
branch = ".*"
image = "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest"
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "runboat.toml"
    path.write_text(CONFIG.format(namespace=NAMESPACE, kubefiles=ROOT / "kubefiles"))
    return path


def render(config, *args, check=True):
    """Runs `runboat render`; returns the CompletedProcess."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    p = subprocess.run(
        [runboat_bin(), "render", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if check:
        assert p.returncode == 0, f"runboat render {args} failed ({p.returncode}):\n{p.stderr}"
    return p


def render_objects(config, mode, branch="16.0", pr=None, name="b0123456789abcdef", fmt="json"):
    args = ["--mode", mode, "--repo", "OCA/mis-builder", "--target-branch", branch,
            "--sha", SHA, "--build-name", name, "--format", fmt]
    if pr is not None:
        args += ["--pr", str(pr)]
    return json.loads(render(config, *args).stdout)


def check_contract(objs, name, mode, branch, pr):
    for o in objs:
        md = o["metadata"]
        assert md["name"] == name or md["name"].startswith(name + "-")
        assert md["namespace"] == NAMESPACE
        assert md["labels"]["runboat/build"] == name
        assert md["annotations"]["runboat/repo"] == "oca/mis-builder"
        assert md["annotations"]["runboat/target-branch"] == branch
        assert md["annotations"]["runboat/pr"] == (str(pr) if pr else "")
        assert md["annotations"]["runboat/git-commit"] == SHA
        tmpl = o.get("spec", {}).get("template")
        if tmpl:
            assert tmpl["metadata"]["labels"]["runboat/build"] == name
        if o["kind"] == "Job":
            kind = {"initialize": "initialize", "cleanup": "cleanup"}.get(mode)
            assert md["labels"].get("runboat/job-kind") == kind
            assert tmpl["metadata"]["labels"].get("runboat/job-kind") == kind
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    jobs = [o for o in objs if o["kind"] == "Job"]
    if mode == "deployment":
        (d,) = deployments
        assert d["spec"]["replicas"] == 0
        assert "runboat/cleanup" in d["metadata"]["finalizers"]
        assert d["metadata"]["annotations"]["runboat/init-status"] == "todo"
    else:
        assert deployments == []
    if mode in ("initialize", "cleanup"):
        assert len(jobs) == 1


# --- against the API server -------------------------------------------------


@pytest.mark.parametrize(
    "branch,pr",
    [
        ("16.0", None),
        ("16.0", 4242),
        # valid git branch names that must not change the YAML's structure
        ('fix/"quoted"#not-a-comment', None),
        ("feat/{{build_name}}/---/it's", 7),
        ("unicode/\u00e9t\u00e9\u2028sep\u0085nel", None),
    ],
)
def test_every_mode_passes_server_dry_run(kube, config, branch, pr):  # noqa: F811
    kube.ensure_namespace(NAMESPACE)
    name = "b" + "f00d" * 4
    seen = 0
    for mode in MODES:
        objs = render_objects(config, mode, branch=branch, pr=pr, name=name)
        check_contract(objs, name, mode, branch, pr)
        for obj in objs:
            r = kube.apply(obj, dry_run=True)
            assert r.status_code in (200, 201), (
                f"{mode}: {obj['kind']} {obj['metadata']['name']} refused by the API server: "
                f"{r.status_code} {r.text}"
            )
            got = r.json()
            assert got["kind"] == obj["kind"]
            assert got["metadata"]["name"] == obj["metadata"]["name"]
            assert got["metadata"]["namespace"] == NAMESPACE
            assert got["metadata"]["labels"]["runboat/build"] == name
            # the value survives the trip: escaping, YAML, JSON, apiserver
            assert got["metadata"]["annotations"]["runboat/target-branch"] == branch
            seen += 1
            # dry-run: nothing was created
            assert kube.get(obj).status_code == 404
    assert seen >= 8 + 5 + 4


def test_server_keeps_what_the_contract_sets(kube, config):  # noqa: F811
    """The Deployment and the Job as the server would store them."""
    kube.ensure_namespace(NAMESPACE)
    name = "b" + "beef" * 4
    objs = render_objects(config, "deployment", pr=12, name=name)
    (d,) = [o for o in objs if o["kind"] == "Deployment"]
    r = kube.apply(d, dry_run=True)
    assert r.status_code in (200, 201), r.text
    got = r.json()
    assert got["spec"]["replicas"] == 0
    assert got["metadata"]["finalizers"] == ["runboat/cleanup"]
    assert got["metadata"]["annotations"]["runboat/init-status"] == "todo"
    assert got["metadata"]["annotations"]["runboat/pr"] == "12"
    assert got["spec"]["selector"]["matchLabels"] == {"app": "odoo", "runboat/build": name}
    containers = got["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["odoo", "mailhog"]
    assert containers[0]["image"] == "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest"

    secret = [o for o in objs if o["kind"] == "Secret"][0]
    r = kube.apply(secret, dry_run=True)
    assert r.status_code in (200, 201), r.text
    import base64

    assert base64.b64decode(r.json()["data"]["PGPASSWORD"]).decode() == 'p"a:s s#w\u2028d'

    (job,) = render_objects(config, "initialize", name=name)[-1:]
    assert job["kind"] == "Job"
    r = kube.apply(job, dry_run=True)
    assert r.status_code in (200, 201), r.text
    got = r.json()
    assert got["spec"]["backoffLimit"] == 0
    assert got["spec"]["activeDeadlineSeconds"] > 0
    assert got["spec"]["template"]["metadata"]["labels"]["runboat/job-kind"] == "initialize"


def test_modes_apply_in_sequence_and_kinds_delete_all(kube, config):  # noqa: F811
    """For real this time: the modes applied one after the other with one field
    manager (objects shared by several modes re-applied without conflict),
    then everything found again, and deleted, by label over --kinds."""
    kube.ensure_namespace(NAMESPACE)
    name = "b" + "cafe" * 4
    applied = set()
    for mode in MODES:
        for obj in render_objects(config, mode, pr=5, name=name):
            r = kube.apply(obj)
            assert r.status_code in (200, 201), f"{mode}: {obj['kind']}: {r.status_code} {r.text}"
            applied.add((obj["kind"], obj["metadata"]["name"]))
    kinds = json.loads(render(config, "--kinds").stdout)
    found = set()
    selector = {"labelSelector": "runboat/build=" + name}
    for k in kinds:
        plural, _ = kube.resource(k["apiVersion"], k["kind"])
        prefix = "/api/" if "/" not in k["apiVersion"] else "/apis/"
        coll = f"{prefix}{k['apiVersion']}/namespaces/{NAMESPACE}/{plural}"
        r = kube.request("GET", coll, params=selector)
        assert r.status_code == 200, r.text
        for item in r.json()["items"]:
            found.add((k["kind"], item["metadata"]["name"]))
            finalizers = item["metadata"].get("finalizers", [])
            if "runboat/cleanup" in finalizers:
                # what the controller does once cleanup succeeded
                rest = [f for f in finalizers if f != "runboat/cleanup"]
                r = kube.request(
                    "PATCH", f"{coll}/{item['metadata']['name']}",
                    data=json.dumps({"metadata": {"finalizers": rest or None}}),
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                assert r.status_code == 200, r.text
        r = kube.request("DELETE", coll,
                         params={**selector, "propagationPolicy": "Background"})
        assert r.status_code == 200, r.text
    assert found == applied
    for k in kinds:
        plural, _ = kube.resource(k["apiVersion"], k["kind"])
        prefix = "/api/" if "/" not in k["apiVersion"] else "/apis/"
        r = kube.request("GET", f"{prefix}{k['apiVersion']}/namespaces/{NAMESPACE}/{plural}",
                         params=selector)
        left = [i["metadata"]["name"] for i in r.json()["items"]
                if not i["metadata"].get("deletionTimestamp")]
        assert left == [], f"{k['kind']} left: {left}"


def test_kinds_are_served_and_namespaced(kube, config):  # noqa: F811
    kinds = json.loads(render(config, "--kinds").stdout)
    assert {"apiVersion": "apps/v1", "kind": "Deployment"} in kinds
    assert {"apiVersion": "batch/v1", "kind": "Job"} in kinds
    for k in kinds:
        res = kube.resource(k["apiVersion"], k["kind"])
        assert res is not None, f"{k} is not served"
        assert res[1], f"{k} is cluster-scoped"


# --- the command itself (no cluster needed) ----------------------------------


def test_formats_agree(config):
    branch = "\u00e9t\u00e9\u2028\"x\""
    as_json = render_objects(config, "deployment", branch=branch, pr=3)
    p = render(config, "--mode", "deployment", "--repo", "oca/mis-builder",
               "--target-branch", branch, "--pr", "3", "--sha", SHA,
               "--build-name", "b0123456789abcdef", "--format", "yaml")
    docs = [d for d in p.stdout.split("---\n") if d.strip()]
    assert [json.loads(d) for d in docs] == as_json
    assert as_json[0]["metadata"]["annotations"]["runboat/target-branch"] == branch
    # ASCII only: no character a YAML parser could take for a line break
    assert p.stdout.isascii()
    raw = render(config, "--mode", "deployment", "--repo", "oca/mis-builder",
                 "--target-branch", "16.0", "--sha", SHA, "--build-name", "b0123456789abcdef",
                 "--format", "raw").stdout
    assert 'name: "b0123456789abcdef-odoo"' in raw
    assert "runboat/init-status" not in raw  # the contract is not applied to raw text


def test_random_build_name(config):
    p = render(config, "--mode", "initialize", "--repo", "oca/x", "--target-branch", "main",
               "--sha", SHA)
    objs = json.loads(p.stdout)
    name = objs[0]["metadata"]["labels"]["runboat/build"]
    assert name.startswith("b") and len(name) == 33
    assert all(o["metadata"]["name"].startswith(name + "-") for o in objs)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--target-branch", "a b"], "--target-branch: not a valid git branch name"),
        (["--target-branch", "a\nkind: Namespace"], "--target-branch"),
        (["--sha", "1234"], "--sha: expected 40 or 64 hex digits"),
        (["--pr", "01"], "--pr: expected a number"),
        (["--pr", "-1"], "--pr"),
        (["--repo", "oca/x/y"], "--repo: expected owner/name"),
        (["--mode", "deploy"], "--mode: expected deployment"),
        (["--format", "xml"], "--format"),
        (["--build-name", "B-1"], "invalid build name"),
        (["--repo", "other/x"], "no [[repos]] entry matches"),
    ],
)
def test_refused_arguments(config, args, message):
    base = {"--mode": "deployment", "--repo": "oca/x", "--target-branch": "main", "--sha": SHA,
            "--build-name": "b1"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    p = render(config, *flat, check=False)
    assert p.returncode in (1, 2), p.stdout
    assert message in p.stderr
    assert p.stdout == ""


def test_broken_kubefiles_are_reported(config, tmp_path):
    kf = tmp_path / "kf"
    kf.mkdir()
    job = textwrap.dedent("""\
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: "{{build_name}}-job"
        """)
    (kf / "initialize.yaml").write_text(job)
    (kf / "cleanup.yaml").write_text(job)
    (kf / "deployment.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: not-prefixed
        """))
    args = ["--mode", "deployment", "--repo", "oca/x", "--target-branch", "main", "--sha", SHA,
            "--build-name", "b1", "--kubefiles", str(kf)]
    p = render(config, *args, check=False)
    assert p.returncode == 1
    assert "does not start with the build name" in p.stderr
    assert str(kf / "deployment.yaml") in p.stderr

    (kf / "deployment.yaml").write_text("{{> missing.yaml}}\n")
    p = render(config, *args, check=False)
    assert p.returncode == 1
    assert "unknown partial 'missing.yaml'" in p.stderr

    (kf / "deployment.yaml").unlink()
    p = render(config, *args, check=False)
    assert p.returncode == 2
    assert p.stderr == (f"{kf}: missing deployment.yaml, expected a kubefiles directory with "
                        "deployment.yaml, initialize.yaml and cleanup.yaml (start.yaml, "
                        "stop.yaml optional)\n")


def run_bin(*args, timeout=30):
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return subprocess.run([runboat_bin(), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def assert_one_line_exit_2(p, prefix, needle):
    """The error contract of the configuration: exit 2, one line on stderr
    that starts with FILE:LINE:, nothing from a sanitizer."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [line for line in p.stderr.splitlines() if " warn " not in line]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(prefix), lines[0]
    assert needle in lines[0], lines[0]
    assert "runtime error" not in p.stderr and "Sanitizer" not in p.stderr


def test_empty_kubefiles_directory(config, tmp_path):
    """`render --kubefiles EMPTY` (a bsearch(NULL, 0) under UBSan once), and a
    configuration naming an empty or incomplete directory: one line, exit 2,
    at --check-config and at start-up."""
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_bin("render", "--config", str(config), "--kubefiles", str(empty), "--mode",
                "deployment", "--repo", "oca/x", "--target-branch", "main", "--sha", SHA)
    assert_one_line_exit_2(p, f"{empty}: ", "no kubefile in the directory")
    assert p.stdout == ""
    p = run_bin("render", "--config", str(config), "--kubefiles", str(empty), "--kinds")
    assert_one_line_exit_2(p, f"{empty}: ", "no kubefile in the directory")

    cfg = tmp_path / "empty.toml"
    cfg.write_text(f'[kubernetes]\nnamespace = "n"\n[build]\ndomain = "x.test"\n'
                   f'kubefiles = "{empty}"\n')
    for flag in ("--check-config", "--config"):
        p = run_bin(flag, str(cfg))
        assert_one_line_exit_2(p, f"{cfg}:5: build.kubefiles: {empty}: ",
                               "no kubefile in the directory, expected a kubefiles directory "
                               "with deployment.yaml, initialize.yaml and cleanup.yaml")
    # a directory missing required modes (start/stop are optional)
    for name in ("deployment.yaml", "start.yaml", "stop.yaml", "notes.txt"):
        (empty / name).write_text("# x\n")
    p = run_bin("--check-config", str(cfg))
    assert_one_line_exit_2(p, f"{cfg}:5: build.kubefiles: {empty}: ",
                           "missing initialize.yaml, cleanup.yaml, expected")
    # per repository too
    cfg.write_text(f'[kubernetes]\nnamespace = "n"\n[build]\ndomain = "x.test"\n'
                   f'kubefiles = "{ROOT / "kubefiles"}"\n[[repos]]\nrepo = "a/b"\n'
                   f'image = "i"\nkubefiles = "{empty}"\n')
    p = run_bin("--check-config", str(cfg))
    assert_one_line_exit_2(p, f"{cfg}:9: repos[0].kubefiles: {empty}: ", "missing initialize.yaml")
    for name in ("initialize.yaml", "cleanup.yaml"):
        (empty / name).write_text("# x\n")
    p = run_bin("--check-config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{cfg}: ok\n"


@pytest.mark.parametrize(
    "doc,where",
    [
        (b"\0", "1:1:"),
        (b"[server]\nlisten = \"127.0.0.1:0\"\n\0\n", "3:1:"),
        (b"[kubernetes]\nnamespace = \"n\"\0\n", "2:16:"),
        (b"[build\0]\n", "1:7:"),
        (b"a.\0 = 1\n", "1:3:"),
        (b"x = \"a\0\"\n", "1:"),  # inside a string: was already right
        (b"# \0\n", "1:"),  # inside a comment: was already right
    ],
)
def test_nul_byte_in_config(tmp_path, doc, where):
    """A NUL byte outside strings hung --check-config and start-up at 100%
    CPU: now one line naming the place, exit 2."""
    cfg = tmp_path / "nul.toml"
    cfg.write_bytes(doc)
    for flag in ("--check-config", "--config"):
        p = run_bin(flag, str(cfg), timeout=20)
        assert_one_line_exit_2(p, f"{cfg}:{where}", "")


@pytest.mark.parametrize("branch", ["a..b", "x.lock", "a b", "-x", "a\\u2028..b"])
def test_sticky_branch_follows_the_webhook_rules(tmp_path, branch):
    """One set of validators: a sticky branch no webhook could bring (git
    refuses it as a branch name) fails --check-config, not a later start."""
    cfg = tmp_path / "sticky.toml"
    cfg.write_text(f'[kubernetes]\nnamespace = "n"\n[build]\ndomain = "x.test"\n'
                   f'kubefiles = "{ROOT / "kubefiles"}"\n[[repos]]\nrepo = "oca/.*"\n'
                   f'image = "i"\n[[sticky_branches]]\nrepo = "oca/x"\nbranch = "{branch}"\n')
    for flag in ("--check-config", "--config"):
        p = run_bin(flag, str(cfg))
        assert_one_line_exit_2(p, f"{cfg}:11: sticky_branches[0].branch: ",
                               "is not a valid branch name, expected a git branch name")
    cfg.write_text(cfg.read_text().replace(f'branch = "{branch}"', 'branch = "a.b/c-d"'))
    p = run_bin("--check-config", str(cfg))
    assert p.returncode == 0, p.stderr
