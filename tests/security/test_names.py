"""Issue 9, items 5 and 6: names the studio uses for itself cannot be taken; a worker name is a plain token."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from studio.batch import load_batch_bytes
from studio.config import builtin_config
from studio.errors import InvalidFile
from studio.layout import RESERVED_SLUGS, slug_problem
from tests.helpers import Sandbox, git
from tests.security.helpers import GOOD, batch_error, push, remote_files, run_worker

REL = "batches/hero.yaml"


def reserved_message(slug: str, name: str) -> str:
    return (f"prompts[0].slug: slug {slug!r} is reserved: renders/<batch>/{name} is renderloop's own file; "
            "choose another slug")


def test_every_file_the_studio_keeps_beside_the_images_is_reserved() -> None:
    assert RESERVED_SLUGS == {"batch-error": "batch-error.json", "review": "review.md"}  # and review.html


@pytest.mark.parametrize("slug", ["batch-error", "review"])
def test_a_reserved_slug_is_refused_with_the_reason(slug: str) -> None:
    text = f"version: 1\nmodel: flux-schnell\nprompts:\n  - slug: {slug}\n    prompt: x\n"
    with pytest.raises(InvalidFile) as caught:
        load_batch_bytes(text.encode(), REL, builtin_config())
    assert str(caught.value) == f"{REL}:4: " + reserved_message(slug, RESERVED_SLUGS[slug])


@pytest.mark.parametrize("slug", ["batch-errors", "reviews", "my-review", "batch", "error"])
def test_names_near_the_reserved_ones_are_fine(slug: str) -> None:
    assert slug_problem(slug) is None


def test_a_pushed_batch_error_slug_is_an_error_record_not_an_endless_render(sandbox: Sandbox) -> None:
    """The reproduction of the issue: the slug collided with the worker's own error record."""
    evil = GOOD.replace("slug: fine", "slug: batch-error")
    push(sandbox, files={"batches/good.yaml": GOOD, "batches/evil.yaml": evil})
    result = run_worker(sandbox)
    assert result.returncode == 0, result.stderr
    error = batch_error(sandbox, "evil")
    assert error["problems"] == [{"line": 6, "message": reserved_message("batch-error", "batch-error.json")}]
    assert "renders/evil/batch-error.png" not in remote_files(sandbox)
    head = git(sandbox.worker, "rev-parse", "HEAD").stdout
    for _ in range(2):  # nothing is rendered, nothing cleared, pass after pass
        assert run_worker(sandbox).returncode == 0
    assert git(sandbox.worker, "rev-parse", "HEAD").stdout == head


def test_the_pre_commit_hook_refuses_a_reserved_slug(sandbox: Sandbox) -> None:
    sandbox.write("batches/hero.yaml", GOOD.replace("slug: fine", "slug: review"))
    git(sandbox.mac, "add", "batches/hero.yaml")
    result = git(sandbox.mac, "commit", "-m", "batch", check=False)
    assert result.returncode == 1
    assert f"{REL}:6: " + reserved_message("review", "review.md") in result.stderr


# -- the worker's name ------------------------------------------------------------------------------

TOKEN_RULE = "is not allowed: use letters, digits, '.', '_' and '-' (1-64 characters)"


@pytest.mark.parametrize(
    "name",
    ["pc\nRenderloop-Status: done", "pc\rx", "pc\tx", "studio pc", "pc\u202ex", "pc\u2028x", "pcé", "p" * 65,
     "pc:x", "pc/../x"],
    ids=["newline-trailer", "cr", "tab", "space", "bidi", "line-separator", "non-ascii", "too-long", "colon", "path"],
)
def test_a_worker_name_that_is_not_a_plain_token_is_refused(sandbox: Sandbox, name: str) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD})
    result = run_worker(sandbox, "--name", name)
    assert result.returncode == 1
    assert result.stderr.strip() == f"renderloop: error: --name: worker name {name[:64]!r} {TOKEN_RULE}"
    assert not any(path.endswith((".png", ".json")) for path in remote_files(sandbox, "renders"))


def test_a_worker_name_in_the_settings_is_checked_too(sandbox: Sandbox) -> None:
    """This machine's machine.yaml names the worker (a pushed renderloop.yaml cannot: a machine setting)."""
    machine = Path(os.environ["RENDERLOOP_MACHINE_CONFIG"])
    machine.write_text('worker:\n  name: "pc\\nRenderloop-Status: done"\n', encoding="utf-8")
    push(sandbox, files={"batches/good.yaml": GOOD})
    result = run_worker(sandbox)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{machine}:2: worker.name: worker name 'pc\\nRenderloop-Status: done' {TOKEN_RULE}"
    )


def test_a_plain_token_names_the_worker_in_every_trailer(sandbox: Sandbox) -> None:
    push(sandbox, files={"batches/good.yaml": GOOD})
    result = run_worker(sandbox, "--name", "studio-pc.lan_2")
    assert result.returncode == 0, result.stderr
    trailers = git(sandbox.remote, "log", "-1", "--format=%(trailers:only,unfold)", "main").stdout.split("\n")
    assert "Renderloop-Worker: studio-pc.lan_2" in trailers
    assert [t for t in trailers if t.startswith("Renderloop-Status:")] == ["Renderloop-Status: done"]
