"""Nothing is written outside the studio, no code from the repository runs, no secret is written."""
from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.fal_server import FalServer, FalState
from tests.helpers import Sandbox, git
from tests.reliability.harness import (
    batch_yaml,
    commit_and_push,
    plain_clone,
    prove_clean_and_pushed,
    prove_history,
    prove_once_each,
    push_with_retry,
    slugs_of,
    start_worker,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="symbolic links and executable hook scripts: POSIX here")


def run_once(sandbox: Sandbox, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, str]:
    run = start_worker(sandbox.worker, sandbox.root / "logs", "--once", *args, env=env, **kwargs)
    code = run.wait(timeout=120)
    assert code is not None, run.output
    return code, run.output


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- nothing written outside the studio ----------------------------------------------


@posix_only
@pytest.mark.parametrize("link", ["renders", "renders/hero"])
def test_a_link_out_of_the_studio_is_refused(sandbox: Sandbox, link: str) -> None:
    outside = sandbox.root / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("the person's files\n")
    before = files_under(outside)
    laptop = plain_clone(sandbox, "laptop")
    target = laptop / link
    if target.exists():
        git(laptop, "rm", "-rq", link)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, target, target_is_directory=True)
    batches = {"batches/hero.yaml": batch_yaml(3), "batches/other.yaml": batch_yaml(2)}
    commit_and_push(laptop, batches, "two batches, and renders pointing elsewhere")
    git(laptop, "add", link)
    git(laptop, "commit", "-q", "--no-verify", "-m", f"{link} is a link out of the studio")
    git(laptop, "push", "-q")
    code, output = run_once(sandbox)
    assert files_under(outside) == before, "the worker wrote outside the studio"
    assert "batch hero is not rendered" in output and "refusing to write outside the studio" in output
    assert code == 1 and "Traceback" not in output, output
    if link == "renders/hero":  # the other batch renders as usual
        prove_once_each(prove_history(sandbox.remote, "main"), "other", slugs_of(2))
    # a second run (recovery walks renders/) still writes nothing there
    code, output = run_once(sandbox)
    assert code == 1 and files_under(outside) == before, output


@posix_only
def test_a_studio_reached_through_a_link_is_not_refused(sandbox: Sandbox) -> None:
    """The control: a worker clone whose own path goes through a link renders as usual."""
    commit_and_push(plain_clone(sandbox, "laptop"), {"batches/hero.yaml": batch_yaml(2)}, "batch")
    alias = sandbox.root / "alias"
    os.symlink(sandbox.worker, alias, target_is_directory=True)
    run = start_worker(alias, sandbox.root / "logs", "--once")
    assert run.wait(timeout=60) == 0, run.output
    prove_once_each(prove_history(sandbox.remote, "main"), "hero", slugs_of(2))


# -- no code from the repository ------------------------------------------------------

HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout",
         "post-merge", "pre-push", "post-rewrite", "reference-transaction", "pre-auto-gc", "post-index-change",
         "fsmonitor-watchman")


def planted(sandbox: Sandbox) -> Path:
    return sandbox.root / "planted-code-ran"


def plant(clone: Path, sentinel: Path) -> dict[str, str]:
    """Files that run code if anything executes them: hooks, Python modules, YAML tags."""
    script = f'#!/bin/sh\necho "$0" >> "{sentinel}"\n'
    files = {f"hooks/{name}": script for name in HOOKS}
    python = f"open({str(sentinel)!r}, 'a').write(__file__ + '\\n')\n"
    for module in ("sitecustomize.py", "usercustomize.py", "yaml.py", "PIL/__init__.py", "git/__init__.py",
                   "pydantic.py", "renderloop.py", "studio/__init__.py", "win_side/__init__.py"):
        files[module] = python
    return files


@posix_only
def test_the_worker_runs_no_code_from_the_repository(sandbox: Sandbox) -> None:
    sentinel = planted(sandbox)
    laptop = plain_clone(sandbox, "laptop")
    files = plant(laptop, sentinel)
    tag = f'!!python/object/apply:os.system ["echo yaml >> {sentinel}"]'
    files["batches/evil.yaml"] = f"version: 1\nmodel: z-image-turbo\nprompts:\n  - slug: x\n    prompt: {tag}\n"
    files["batches/hero.yaml"] = batch_yaml(3)
    for name in files:
        (laptop / name).parent.mkdir(parents=True, exist_ok=True)
    commit_and_push(laptop, files, "hooks, modules and YAML tags that would run code")
    for name in HOOKS:
        (laptop / "hooks" / name).chmod(0o755)
    git(laptop, "update-index", "--chmod=+x", *(f"hooks/{name}" for name in HOOKS))
    git(laptop, "commit", "-q", "--no-verify", "-m", "make them executable")
    git(laptop, "push", "-q")
    # the worker's clone has the studio's hooks enabled (someone ran `renderloop init` there)
    git(sandbox.worker, "config", "core.hooksPath", "hooks")
    git(sandbox.worker, "config", "core.fsmonitor", "hooks/fsmonitor-watchman")
    git(sandbox.worker, "pull", "-q", "--no-verify")
    sentinel.unlink(missing_ok=True)  # that pull was git's doing, not the worker's
    # the worker must rebase over a push made while it renders: every kind of hook would fire
    (laptop / "notes.txt").write_text("meanwhile\n")
    git(laptop, "add", "notes.txt")
    git(laptop, "commit", "-q", "--no-verify", "-m", "a person's commit the worker rebases over")
    installed = shutil.which("renderloop")
    assert installed, "the renderloop command is not on PATH"
    git(laptop, "push", "-q")
    # started as installed, from inside the studio (the folder holds yaml.py, PIL/, sitecustomize.py...)
    code, output = run_once(sandbox, command=[installed], cwd=sandbox.worker)
    assert code == 0, output
    assert not sentinel.exists(), f"code from the repository ran: {sentinel.read_text()}"
    prove_once_each(prove_history(sandbox.remote, "main"), "hero", slugs_of(3))
    assert (sandbox.worker / "renders/evil/batch-error.json").is_file()
    # and once more over another person's commit (fetch, rebase, push)
    (laptop / "notes.txt").write_text("later\n")
    git(laptop, "commit", "-q", "--no-verify", "-am", "another")
    push_with_retry(laptop)
    code, output = run_once(sandbox, command=[installed], cwd=sandbox.worker)
    assert code == 0 and not sentinel.exists(), output


# -- secrets ------------------------------------------------------------------------------

KEY = "fal-secret-5f0c1d2e3a4b"


def every_stored_byte(repo: Path) -> list[tuple[str, bytes]]:
    """Each file of a clone or bare repository, and each git object decompressed."""
    files = [p for p in repo.rglob("*") if p.is_file()]
    found = [(str(p), p.read_bytes()) for p in files]
    for path in files:
        if "objects" in path.parts and "pack" not in path.parts:  # loose objects are zlib-compressed
            try:
                found.append((f"{path} (inflated)", zlib.decompress(path.read_bytes())))
            except zlib.error:
                pass
    objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True,
                             check=True).stdout
    found.append((f"{repo}: every object", objects))
    return found


def test_the_fal_key_is_never_written(sandbox: Sandbox, figures: dict[str, Any]) -> None:
    server = FalServer(FalState(key=KEY, render_seconds=0.05)).start()
    try:
        laptop = plain_clone(sandbox, "laptop")
        batch = batch_yaml(3, size=256).replace("model: z-image-turbo", "model: flux-schnell")
        batch += '  - slug: refused\n    prompt: "REJECT this one"\n'  # fal answers 422: a failed record
        commit_and_push(laptop, {"batches/cloud.yaml": batch}, "batch for fal")
        env = {**os.environ, "FAL_KEY": KEY}
        code, output = run_once(sandbox, "--backend", "fal", "--fal-url", server.url, env=env)
        assert code == 0, output
        seen = [auth for _, _, auth in server.state.seen]
        assert f"Key {KEY}" in seen, "the key was not used at all: the test would prove nothing"
    finally:
        server.stop()
    records = sorted((sandbox.worker / "renders/cloud").glob("*.json"))
    assert len(records) == 4 and '"failed"' in (sandbox.worker / "renders/cloud/refused.json").read_text()
    checked = 0
    for repo in (sandbox.worker, sandbox.remote):
        for where, data in every_stored_byte(repo):
            checked += len(data)
            assert KEY.encode() not in data, f"FAL_KEY found in {where}"
    assert KEY not in output, "FAL_KEY found in the worker's log"
    figures.update({"bytes searched for FAL_KEY (files, inflated objects, log)": checked + len(output),
                    "found": 0})
    prove_clean_and_pushed(sandbox)


def test_fal_key_in_the_environment_of_a_placeholder_run_is_not_written(sandbox: Sandbox) -> None:
    commit_and_push(plain_clone(sandbox, "laptop"), {"batches/hero.yaml": batch_yaml(2)}, "batch")
    code, output = run_once(sandbox, env={**os.environ, "FAL_KEY": KEY})
    assert code == 0, output
    for where, data in every_stored_byte(sandbox.worker):
        assert KEY.encode() not in data, f"FAL_KEY found in {where}"
