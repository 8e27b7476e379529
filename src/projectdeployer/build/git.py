"""Git checkouts of services built from a repository (``git_repo = "url@ref"``).

Each service gets its own clone at ``{home}/git_checkouts/{project}/{env}/{service}/``: cloned on
the first build, fetched on later ones, then checked out (detached) at the branch, tag or commit
the ref names. A token for a private https repository reaches git only through ``GIT_ASKPASS``
and the environment of the git process: never the command line (visible in the process list),
never ``.git/config``, never our output (every line we pass on is scrubbed of it).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from ..core import paths
from ..core.errors import ProjectDeployerError
from ..project.gitref import GitRepo, parse_git_repo

#: Answers git's "Username for ..." and "Password for ..." prompts from the environment.
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$PD_GIT_USERNAME" ;;
  *) printf '%s\\n' "$PD_GIT_TOKEN" ;;
esac
"""


class GitError(ProjectDeployerError):
    """A git operation failed; the message has git's own words (with any token removed)."""


@attrs.frozen
class Checkout:
    """A working tree at a resolved commit."""

    path: Path
    repo: GitRepo
    commit: str
    #: What the ref turned out to be: ``branch``, ``tag``, ``commit`` or ``default`` (no ref given).
    ref_kind: str


@contextmanager
def _askpass_env(token: str | None, username: str) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PD_GIT_"))}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    if token is None:
        env["GIT_ASKPASS"] = "/bin/false"  # fail fast instead of prompting
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="pd-askpass-") as tmp:
        script = Path(tmp) / "askpass.sh"
        script.write_text(_ASKPASS)
        script.chmod(stat.S_IRWXU)
        env.update(GIT_ASKPASS=str(script), PD_GIT_USERNAME=username, PD_GIT_TOKEN=token)
        yield env


class GitManager:
    """Checks out the repositories of one project/environment.

    :param project: project name.
    :param env: environment name; environments may use different refs of one repository.
    :param log: receives each line of git's progress (already scrubbed of secrets).
    """

    def __init__(self, project: str, env: str, *, log: Callable[[str], None] | None = None) -> None:
        self.project = project
        self.env = env
        self._log = log or (lambda line: None)

    def checkout_dir(self, service: str) -> Path:
        return paths.git_checkout_dir(self.project, self.env, service)

    def checkout(self, service: str, git_repo: str | GitRepo, *, token: str | None = None, username: str = "x-access-token") -> Checkout:
        """Clone or fetch ``git_repo`` for ``service`` and check out its ref; returns the checkout.

        :param token: for private https repositories (GitHub, GitLab and Gitea accept a token as
            the password); ignored for ssh URLs, which use the operator's SSH keys.
        :param username: the user name sent with the token.
        """
        repo = parse_git_repo(git_repo) if isinstance(git_repo, str) else git_repo
        if repo.scheme not in ("https", "http"):
            token = None
        path = self.checkout_dir(service)
        secrets = [token] if token else []
        with _askpass_env(token, username) as env:

            def git(*args: str, cwd: Path | None = path, check: bool = True) -> subprocess.CompletedProcess[str]:
                return self._git(args, cwd=cwd, env=env, secrets=secrets, check=check)

            if not (path / ".git").is_dir():
                if path.exists():
                    shutil.rmtree(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._log(f"cloning {repo.url} into {path}")
                git("clone", "--no-checkout", "--origin", "origin", "--", repo.url, str(path), cwd=None)
            else:
                current = git("remote", "get-url", "origin").stdout.strip()
                if current != repo.url:
                    git("remote", "set-url", "origin", repo.url)
            self._log(f"fetching {repo.url}")
            git("fetch", "--prune", "--prune-tags", "--tags", "--force", "origin", "+refs/heads/*:refs/remotes/origin/*")
            commit, kind = self._resolve(repo, git)
            git("checkout", "--force", "--detach", commit)
            git("clean", "-ffdxq")
            self._log(f"checked out {repo.ref or 'default branch'} at {commit[:12]}")
        return Checkout(path=path, repo=repo, commit=commit, ref_kind=kind)

    def _resolve(self, repo: GitRepo, git: Callable[..., subprocess.CompletedProcess[str]]) -> tuple[str, str]:
        if repo.ref is None:
            git("remote", "set-head", "origin", "--auto")
            return git("rev-parse", "refs/remotes/origin/HEAD^{commit}").stdout.strip(), "default"
        candidates = [
            (f"refs/remotes/origin/{repo.ref}", "branch"),
            (f"refs/tags/{repo.ref}", "tag"),
        ]
        if repo.is_commit:
            candidates.append((repo.ref, "commit"))
        for refname, kind in candidates:
            found = git("rev-parse", "--verify", "--quiet", f"{refname}^{{commit}}", check=False)
            if found.returncode == 0:
                return found.stdout.strip(), kind
        raise GitError(f"{repo.url}: no branch, tag or commit named '{repo.ref}'")

    def _git(self, args: Sequence[str], *, cwd: Path | None, env: dict[str, str], secrets: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        # credential.helper= : never store the token in a credential cache or file.
        command = ["git", "-c", "credential.helper=", *args]
        proc = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL)
        proc.stdout, proc.stderr = _scrub(proc.stdout, secrets), _scrub(proc.stderr, secrets)
        if check and proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()
            raise GitError(f"git {args[0]} failed: {detail[-1] if detail else f'exit code {proc.returncode}'}")
        return proc

    def cleanup(self, service: str | None = None) -> list[Path]:
        """Delete the checkouts of this environment (or of one service); returns what was removed."""
        base = paths.home() / "git_checkouts" / self.project / self.env
        targets = [base / service] if service else ([base] if base.exists() else [])
        removed = [t for t in targets if t.exists()]
        for target in removed:
            shutil.rmtree(target)
        return removed


def cleanup_git_checkouts(project: str, env: str | None = None) -> list[Path]:
    """Delete the git checkouts of ``project`` (one environment, or all)."""
    base = paths.home() / "git_checkouts" / project
    target = base / env if env else base
    if not target.exists():
        return []
    shutil.rmtree(target)
    return [target]


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
