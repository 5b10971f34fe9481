"""Revisions of the project: git commits resolved, exported once under the work
folder, and the working tree's content key (what `scons patch` and `psu patch`
compare)."""
import hashlib
import os
import shutil
import subprocess

from .errors import ToolError, UsageError

WORKTREE = ("WORKTREE", ".")


def git(top, *args):
    try:
        done = subprocess.run(["git", *args], cwd=top, capture_output=True, text=True)
    except FileNotFoundError:
        raise ToolError("git not found", hint="scons patch needs git")
    return done


def resolve(top, ref, what):
    """Commit hash of `ref`, or WORKTREE for the working tree."""
    if not ref:
        raise UsageError(f"{what}=<revision> is required (a tag, branch or commit"
                         + (", or WORKTREE)" if what == "TO" else ")"))
    if what == "TO" and ref in WORKTREE:
        return "WORKTREE"
    done = git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if done.returncode != 0:
        raise UsageError(f"{what}={ref}: not a revision of the repository at {top}")
    return done.stdout.strip()


def worktree_key(top, outputs=()):
    """Changes whenever the working tree's content does: its tracked files (the
    tree `git stash create` would commit) and the untracked files git does not
    ignore, by path, size and modification time (a source not yet added is part
    of the build).  `outputs`: folders under `top` the build itself writes."""
    # the tree, not the commit: a stash commit carries the time it was made
    stash = git(top, "stash", "create").stdout.strip() or "HEAD"
    tree = git(top, "rev-parse", "--verify", "--quiet", f"{stash}^{{tree}}").stdout.strip()
    key = tree or "no-commit"
    listed = git(top, "ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")
    skipped = tuple(os.path.normpath(d) + os.sep for d in outputs) + (".sconsign",)
    untracked = hashlib.sha256()
    for name in sorted(filter(None, listed)):
        if os.path.normpath(name).startswith(skipped):
            continue
        try:
            status = os.stat(os.path.join(top, name))
        except OSError:
            continue
        untracked.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    return f"{key}+{untracked.hexdigest()[:16]}"


def export(config, sha):
    """The tree of commit `sha`, exported (once) under the work folder."""
    destination = config.path("revisions", sha)
    if os.path.isdir(destination):
        return destination
    temporary = destination + f".tmp{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    # the project's own folder of the repository, exported at the root
    prefix = git(config.top, "rev-parse", "--show-prefix").stdout.strip().rstrip("/")
    tree = f"{sha}:{prefix}" if prefix else sha
    archive = subprocess.run(["git", "archive", "--format=tar", tree],
                             cwd=config.top, capture_output=True)
    if archive.returncode != 0:
        raise ToolError(f"git archive {sha} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", temporary], input=archive.stdout, check=True)
    os.rename(temporary, destination)
    return destination
