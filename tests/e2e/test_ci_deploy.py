"""docs/ci-deploy.md's GitHub Actions workflow, run as written: its `run:` steps in order, each in
``bash --noprofile --norc -eo pipefail`` (GitHub's ``shell: bash``), stdin not a terminal, a runner
HOME of its own (no key file, no ~/.ssh), the secrets handed over through each step's ``env:``
and ``$GITHUB_ENV`` carried from step to step, as Actions does. The servers are a real
`tako-server serve` and SeaweedFS on 127.0.0.1.

The laptop side (credentials, backup key, `tako secrets key export` through a fake `xclip`) runs
first; then the job: exit 0 and the deploy's backup on the bucket; exit 1 with Tako's message when
the credentials are missing or expired; exit 0 with the `! Validation: ...` warning when they
expire within 30 days; exit 1 when the checkout has no backup key yet.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tako_backups.project.secrets import load_secrets, save_secrets
from tako_backups.remote.client import RpcClient, ServerReplyError
from tako_backups.remote.signing import FileSigner
from tests.support.developer import Developer, enter_developer
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import ROOT, RunningServer

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "ci-deploy.md"
APP = "ci-demo"
INSTALL = "python -m pip install tako-backups"
SECRET_EXPRESSION = re.compile(r"\$\{\{ secrets\.([A-Z_]+) \}\}")


@dataclass
class Step:
    name: str
    run: str
    env: dict[str, str]


@dataclass
class Job:
    """The outcome: the step that ended the job, its exit code and output; ``printed`` holds every
    step's stdout + stderr by name."""

    step: str
    code: int
    stdout: str
    stderr: str
    printed: dict[str, str] = field(default_factory=dict)


def workflow_steps() -> list[Step]:
    """The `run:` steps of the doc's only ```yaml block; `uses:` steps are GitHub's actions
    (checkout, setup-python, Tailscale) and have nothing to run here."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    workflow = yaml.safe_load(blocks[0])
    job = workflow["jobs"]["deploy"]
    assert job["defaults"]["run"]["shell"] == "bash"
    steps = []
    for step in job["steps"]:
        if "uses" in step:
            continue
        assert "${{" not in step["run"], "secrets reach a command through env: only"
        steps.append(Step(step["name"], step["run"], dict(step.get("env", {}))))
    assert [s.name for s in steps] == ["Install tako-backups", "Write config.toml", "Load the deploy key "
                                                                                    "into "
                                       "ssh-agent", "Import the secrets key", "Deploy"]
    assert steps[0].run.strip() == INSTALL
    return steps


def run_job(workspace: Path, runner_home: Path, secrets: dict[str, str]) -> Job:
    """Run the workflow's steps after the install (tako-backups is installed in this venv, and
    its `tako` is on PATH) like an Actions runner, stopping at the first failing step."""
    github_env = runner_home.parent / f"{runner_home.name}-github-env"
    github_env.write_text("")
    env = {"HOME": str(runner_home), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "LC_ALL": "C.UTF-8", "GITHUB_ENV": str(github_env), "CI": "true", "GITHUB_ACTIONS": "true"}
    job = Job("", 0, "", "")
    try:
        for step in workflow_steps()[1:]:
            step_env = {name: SECRET_EXPRESSION.sub(lambda m: secrets[m.group(1)], value)
                        for name, value in step.env.items()}
            script = runner_home.parent / f"{runner_home.name}-step.sh"
            script.write_text(step.run)
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                  cwd=workspace, env={**env, **step_env}, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=300)
            env.update(line.split("=", 1) for line in github_env.read_text().splitlines() if "=" in line)
            job = Job(step.name, done.returncode, done.stdout, done.stderr,
                      {**job.printed, step.name: done.stdout + done.stderr})
            if done.returncode != 0:
                break
    finally:
        if "SSH_AGENT_PID" in env:  # the agent the workflow started
            os.kill(int(env["SSH_AGENT_PID"]), signal.SIGTERM)
    return job


@dataclass
class Laptop:
    dev: Developer
    seaweedfs: SeaweedFS
    clipboard: Path

    def tako(self, *args: str) -> str:
        result = self.dev.tako(*args)
        assert result.exit_code == 0, (args, result.output)
        return result.output

    def credentials(self, expires_on: str) -> None:
        self.tako("storages", "credentials", "backups", "--env", "production", "--access-key-id",
                  self.seaweedfs.access_key, "--secret-access-key", self.seaweedfs.secret_key,
                  "--expires-on", expires_on)

    def export(self) -> str:
        assert self.tako("secrets", "key", "export", "--env", "production") == "✔ Key copied to clipboard.\n"
        return self.clipboard.read_text()


@pytest.fixture
def laptop(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, la: RunningServer, bucket: str,
           seaweedfs: SeaweedFS) -> Laptop:
    dev = enter_developer(tmp_path, home, monkeypatch)
    dev.write_project(APP, ["la"], seaweedfs, bucket)
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, body in (("wl-copy", "exit 1"), ("xclip", f"cat > {tools}/clipboard")):
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    return Laptop(dev, seaweedfs, tools / "clipboard")


def checkout(laptop: Laptop, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """What the runner gets: a fresh clone of the committed files, and an empty HOME."""
    workspace = tmp_path / f"{name}-workspace"
    (workspace / ".tako").mkdir(parents=True)
    shutil.copy(laptop.dev.app_dir / "tako.toml", workspace / "tako.toml")
    shutil.copy(laptop.dev.app_dir / ".tako" / "secrets.json", workspace / ".tako" / "secrets.json")
    runner_home = tmp_path / f"{name}-home"
    runner_home.mkdir()
    return workspace, runner_home


def ci_secrets(laptop: Laptop, la: RunningServer, home: Path, bundle: str) -> dict[str, str]:
    return {"TAKO_SECRETS_KEY": bundle, "DEPLOY_SSH_KEY": (home / ".ssh" / "id_ed25519").read_text(),
            "TAKO_CONFIG_TOML": (f'[[servers]]\nname = "la"\nhost = "127.0.0.1"\n'
                                 f"management_port = {la.port}\n")}


def backups_on(la: RunningServer, signer: FileSigner) -> list[str]:
    """The app's backups on the server (none before its first deploy)."""
    with RpcClient("la", "127.0.0.1", la.port, [signer]) as client:
        try:
            return [b["id"] for b in client.call("list_backups", {"app": f"{APP}/production"})["backups"]]
        except ServerReplyError as exc:
            assert f"Backups are not configured for {APP}/production." in str(exc)
            return []


def test_the_workflow_deploys_without_a_terminal(laptop: Laptop, la: RunningServer, home: Path,
                                                signer: FileSigner, tmp_path: Path) -> None:
    laptop.credentials("never")
    laptop.tako("backups", "keys", "rotate", "--env", "production")
    secrets = ci_secrets(laptop, la, home, laptop.export())
    before = backups_on(la, signer)
    workspace, runner_home = checkout(laptop, tmp_path, "ok")
    job = run_job(workspace, runner_home, secrets)
    assert (job.step, job.code) == ("Deploy", 0), job
    [made] = [b for b in backups_on(la, signer) if b not in before]
    expected = rf"Deploy\n{APP} \(production\)\nla: deployed, backup {made} \(.+\)\n"
    assert re.fullmatch(expected, job.stdout), job
    assert job.stderr == ""
    assert job.printed["Import the secrets key"] == "✔ Imported production key.\n"
    assert job.printed["Load the deploy key into ssh-agent"].startswith("Agent pid ")
    assert all(secrets["TAKO_SECRETS_KEY"] not in text for text in job.printed.values())
    key_id = load_secrets(workspace / ".tako" / "secrets.json").envs["production"].key_id
    assert (runner_home / ".local" / "share" / "tako" / "keys" / key_id).is_file()
    assert (workspace / ".tako" / "secrets.json").read_bytes() == (
        laptop.dev.app_dir / ".tako" / "secrets.json").read_bytes(), "the job changes nothing committed"


def test_missing_or_expired_credentials_fail_the_job(laptop: Laptop, la: RunningServer, home: Path,
                                                     signer: FileSigner, tmp_path: Path) -> None:
    laptop.credentials("never")
    laptop.tako("backups", "keys", "rotate", "--env", "production")
    secrets = ci_secrets(laptop, la, home, laptop.export())
    before = backups_on(la, signer)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    laptop.credentials(today)
    workspace, runner_home = checkout(laptop, tmp_path, "expired")
    job = run_job(workspace, runner_home, secrets)
    assert (job.step, job.code, job.stdout) == ("Deploy", 1, ""), job
    assert job.stderr == "error: Storage errors:\n" + "".join(
        f"  Storage credentials for 'backups' in environment 'production' expired on {today} ({field}). "
        "Update the backup storage credentials before deploying.\n" for field in ("access key id",
                                                                                  "secret access key"))
    stored = load_secrets(laptop.dev.app_dir / ".tako" / "secrets.json")
    del stored.envs["production"].storages["backups"]
    save_secrets(stored)
    workspace, runner_home = checkout(laptop, tmp_path, "missing")
    job = run_job(workspace, runner_home, secrets)
    assert (job.step, job.code, job.stderr) == ("Deploy", 1, (
        "error: Storage errors:\n  Backup uses S3 resource 'backups' but credentials are missing for "
        "environment 'production'\n")), job
    assert backups_on(la, signer) == before


def test_credentials_expiring_soon_warn_but_pass(laptop: Laptop, la: RunningServer, home: Path,
                                                 signer: FileSigner, tmp_path: Path) -> None:
    laptop.credentials("in 10 days")
    laptop.tako("backups", "keys", "rotate", "--env", "production")
    secrets = ci_secrets(laptop, la, home, laptop.export())
    workspace, runner_home = checkout(laptop, tmp_path, "soon")
    job = run_job(workspace, runner_home, secrets)
    date = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=10)).isoformat()
    assert (job.step, job.code) == ("Deploy", 0), job
    assert job.stderr == ("! Validation: Storage credentials for 'backups' in environment 'production' "
                          "expire "
                          f"within 30 days on {date}. Rotate the backup storage credentials before they "
                          f"expire.\n")
    assert "la: deployed, backup b" in job.stdout


def test_a_checkout_without_a_backup_key_is_refused(laptop: Laptop, la: RunningServer, home: Path,
                                                    signer: FileSigner, tmp_path: Path) -> None:
    laptop.credentials("never")
    secrets = ci_secrets(laptop, la, home, laptop.export())
    before = backups_on(la, signer)
    workspace, runner_home = checkout(laptop, tmp_path, "nokey")
    job = run_job(workspace, runner_home, secrets)
    assert (job.step, job.code) == ("Deploy", 1), job
    assert job.stderr.startswith("error: Backups are enabled for production, but .tako/secrets.json has no "
                                 "backup key yet, and this deploy has no terminal to confirm making one.\n")
    assert load_secrets(workspace / ".tako" / "secrets.json").envs["production"].backup_keys == []
    assert backups_on(la, signer) == before
