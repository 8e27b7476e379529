"""GitManager against real repositories: a bare repo over file:// and over smart HTTP with a token."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from projectdeployer.build.git import GitError, GitManager, cleanup_git_checkouts
from tests.support.git_http import GitHTTPServer

pytestmark = pytest.mark.unit

TOKEN = "ghp_TestToken0123456789abcdef"


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> dict[str, object]:
    """A bare repo 'app.git' with main (2 commits), a 'develop' branch and a tag v1.0.0."""
    work = tmp_path / "work"
    work.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=work)
    (work / "app.txt").write_text("one\n")
    sh("git", "add", ".", cwd=work)
    sh("git", "commit", "-qm", "one", cwd=work)
    first = sh("git", "rev-parse", "HEAD", cwd=work)
    sh("git", "tag", "v1.0.0", cwd=work)
    (work / "app.txt").write_text("two\n")
    sh("git", "commit", "-qam", "two", cwd=work)
    second = sh("git", "rev-parse", "HEAD", cwd=work)
    sh("git", "checkout", "-q", "-b", "develop", cwd=work)
    (work / "app.txt").write_text("dev\n")
    sh("git", "commit", "-qam", "dev", cwd=work)
    dev = sh("git", "rev-parse", "HEAD", cwd=work)
    sh("git", "checkout", "-q", "main", cwd=work)
    repos = tmp_path / "repos"
    repos.mkdir()
    sh("git", "clone", "-q", "--bare", str(work), str(repos / "app.git"), cwd=tmp_path)
    return {"work": work, "bare": repos / "app.git", "root": repos, "first": first, "second": second, "dev": dev}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROJECTDEPLOYER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_branch_tag_commit_and_default(origin: dict, home: Path) -> None:
    gm = GitManager("shop", "prod")
    url = f"file://{origin['bare']}"
    co = gm.checkout("api", f"{url}@develop")
    assert co.path == home / "git_checkouts" / "shop" / "prod" / "api"
    assert (co.commit, co.ref_kind) == (origin["dev"], "branch")
    assert (co.path / "app.txt").read_text() == "dev\n"
    co = gm.checkout("api", f"{url}@v1.0.0")
    assert (co.commit, co.ref_kind) == (origin["first"], "tag")
    assert (co.path / "app.txt").read_text() == "one\n"
    co = gm.checkout("api", f"{url}@{str(origin['second'])[:9]}")
    assert (co.commit, co.ref_kind) == (origin["second"], "commit")
    co = gm.checkout("api", url)
    assert (co.commit, co.ref_kind) == (origin["second"], "default")


def test_fetch_picks_up_new_commits_and_cleans_the_tree(origin: dict) -> None:
    gm = GitManager("shop", "dev")
    url = f"file://{origin['bare']}@main"
    co = gm.checkout("api", url)
    (co.path / "stray.txt").write_text("left over from a build\n")
    (co.path / "app.txt").write_text("edited\n")
    work = origin["work"]
    (work / "app.txt").write_text("three\n")
    sh("git", "commit", "-qam", "three", cwd=work)
    sh("git", "push", "-q", str(origin["bare"]), "main", cwd=work)
    co2 = gm.checkout("api", url)
    assert co2.commit == sh("git", "rev-parse", "HEAD", cwd=work)
    assert (co2.path / "app.txt").read_text() == "three\n"
    assert not (co2.path / "stray.txt").exists()


def test_environments_use_their_own_checkouts(origin: dict) -> None:
    url = f"file://{origin['bare']}"
    prod = GitManager("shop", "prod").checkout("api", f"{url}@v1.0.0")
    dev = GitManager("shop", "dev").checkout("api", f"{url}@develop")
    assert prod.path != dev.path
    assert (prod.path / "app.txt").read_text() == "one\n" and (dev.path / "app.txt").read_text() == "dev\n"


def test_unknown_ref_is_a_clear_error(origin: dict) -> None:
    with pytest.raises(GitError, match="no branch, tag or commit named 'nope'"):
        GitManager("shop", "dev").checkout("api", f"file://{origin['bare']}@nope")


def test_private_http_repo_with_token_never_leaks(origin: dict, tmp_path: Path) -> None:
    lines: list[str] = []
    with GitHTTPServer(origin["root"], TOKEN) as server:
        gm = GitManager("shop", "prod", log=lines.append)
        co = gm.checkout("api", server.url("app.git") + "@develop", token=TOKEN)
        assert co.commit == origin["dev"]
        # The token was really used: requests without it were refused, with it accepted.
        assert any(auth is None for _, auth in server.requests)
        assert any(auth is not None for _, auth in server.requests)
        co = gm.checkout("api", server.url("app.git") + "@v1.0.0", token=TOKEN)
        assert co.commit == origin["first"]
        with pytest.raises(GitError) as wrong:
            GitManager("shop", "other").checkout("api", server.url("app.git"), token="wrong-token")
        with pytest.raises(GitError):
            GitManager("shop", "none").checkout("api", server.url("app.git"))
    assert TOKEN not in str(wrong.value) and "wrong-token" not in str(wrong.value)
    git_dir = co.path / ".git"
    for path in git_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token found in {path}"
    assert TOKEN not in "\n".join(lines)


def test_token_is_not_on_any_command_line(origin: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every git process gets the token through its environment only (ps shows arguments)."""
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(args, *a, **kw):  # type: ignore[no-untyped-def]
        seen.append(list(args))
        return real_run(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    with GitHTTPServer(origin["root"], TOKEN) as server:
        GitManager("shop", "prod").checkout("api", server.url("app.git") + "@main", token=TOKEN)
    git_calls = [c for c in seen if c and c[0] == "git"]
    assert git_calls, "no git command ran"
    assert all(TOKEN not in " ".join(c) for c in git_calls)


def test_cleanup(origin: dict, home: Path) -> None:
    GitManager("shop", "dev").checkout("api", f"file://{origin['bare']}")
    GitManager("shop", "prod").checkout("api", f"file://{origin['bare']}")
    assert GitManager("shop", "dev").cleanup("api") == [home / "git_checkouts" / "shop" / "dev" / "api"]
    assert cleanup_git_checkouts("shop") == [home / "git_checkouts" / "shop"]
    assert not (home / "git_checkouts" / "shop").exists()
    assert cleanup_git_checkouts("shop") == []
