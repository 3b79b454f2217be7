"""Which build this process runs: the package version and the git commit it was made from (`GET /api/v1/version`).

On-call comparing two API hosts, or a bug report against a release, needs the exact commit, not only the version
number (which changes once per release). Where it comes from, first found wins, looked up once at startup:

1. `FIELDCASE_COMMIT` (`Settings.commit`), set by whoever builds the image or deploys the release: the only
   source that is right for every way of installing (a wheel, a container, a copy of the tree);
2. the installed package's own record of where it came from (PEP 610 `direct_url.json`), which pip writes with
   the commit when it installs from a git URL (`pip install git+https://...@<commit>`);
3. `git rev-parse HEAD` in the folder the code runs from, when that is a git work tree (a developer's checkout, or
   `pip install -e .`), with a short timeout; a tree with uncommitted changes says so (`-dirty`).

None of them: the commit is `null` and its source `unknown`.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "fieldcase"
GIT_TIMEOUT = 2.0


@dataclass(frozen=True)
class BuildInfo:
    version: str
    commit: str | None
    commit_source: str  # "env", "package", "git" or "unknown"

    def as_dict(self) -> dict[str, str | None]:
        return {"version": self.version, "commit": self.commit, "commit_source": self.commit_source}


def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _package_commit() -> str | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        commit = json.loads(text).get("vcs_info", {}).get("commit_id")
    except (ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) and commit else None


@functools.cache
def _git_commit(folder: Path) -> str | None:
    """Asked once per process: the code a process runs is what it imported at start, so a later commit in its folder
    is not its build (and every app a process builds, per command or per test, would otherwise start two gits)."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=False)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = head.stdout.strip()
    return commit + "-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else commit


def build_info(commit: str = "", *, source_folder: Path | None = None) -> BuildInfo:
    """The version, and the commit from `commit` (FIELDCASE_COMMIT), the package metadata or git, in that order."""
    version = package_version()
    if commit:
        return BuildInfo(version, commit, "env")
    found = _package_commit()
    if found:
        return BuildInfo(version, found, "package")
    found = _git_commit(source_folder or Path(__file__).resolve().parents[2])
    if found:
        return BuildInfo(version, found, "git")
    return BuildInfo(version, None, "unknown")
