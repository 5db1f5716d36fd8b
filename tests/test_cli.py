"""The command line everywhere: `-C DIR`, defaults in help, hidden verbs, broken pipes, the demo's own code."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from renderloop.main import build_parser
from tests.comfyui_server import ComfyServer
from tests.helpers import BATCH_YAML, cli, git, make_sandbox
ZIT_FILES = ["z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"]


def test_dash_C_before_the_command_runs_it_in_that_folder(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    box.write("batches/hero.yaml", BATCH_YAML)
    there = cli("-C", str(box.mac), "status", cwd=tmp_path)
    assert there.returncode == 0, there.stderr
    assert "hero" in there.stdout
    here = cli("status", cwd=box.mac)
    assert there.stdout == here.stdout
    # relative, and combined with the command's own --repo (as `git -C a -C b`)
    nested = cli("-C", "mac", "status", "--repo", ".", cwd=tmp_path)
    assert nested.stdout == here.stdout


def test_dash_C_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = cli("-C", str(tmp_path / "nowhere"), "status", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"renderloop: error: -C {tmp_path / 'nowhere'}: no such folder"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _every_parser(parser: argparse.ArgumentParser, name: str = "renderloop") -> dict[str, argparse.ArgumentParser]:
    found = {name: parser}
    for verb, command in _subparsers(parser).items():
        found.update(_every_parser(command, f"{name} {verb}"))
    return found


def test_every_option_says_its_default_in_its_help() -> None:
    parser = build_parser()
    missing = []
    every = _every_parser(parser)
    assert "renderloop ledger verify" in every
    for name, command in every.items():
        text = command.format_help()
        for action in command._actions:
            default = action.default
            if default is None or default is argparse.SUPPRESS or action.help is argparse.SUPPRESS:
                continue
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                                   argparse._VersionAction, argparse._SubParsersAction)):
                continue  # a flag's default is its absence
            shown = "this folder" if default == Path(".") else str(default)
            if isinstance(default, float):
                shown = f"{default:g}"  # 120.0 is said "120"
            if isinstance(default, list) and not default:
                shown = "default:"
            help_text = " ".join(command._get_formatter()._expand_help(action).split())
            if "default" not in help_text or shown not in help_text:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: {help_text!r}")
            assert "default" in " ".join(text.split())
    assert not missing, "\n".join(missing)


def test_hook_is_hidden_from_the_main_help_but_runs() -> None:
    text = build_parser().format_help()
    assert not re.search(r"^\s+hook\s", text, re.MULTILINE), text
    assert "status" in text and "worker" in text
    assert "hook" in _subparsers(build_parser())


def test_status_into_a_closed_pipe_leaves_quietly(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    for index in range(40):
        box.write(f"batches/b{index:02d}.yaml", BATCH_YAML)
    # `renderloop status | head -1`: the reader is gone before the output is written
    proc = subprocess.Popen([sys.executable, "-m", "renderloop", "status"], cwd=box.mac,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert err == ""
    assert code in (0, 141)


def test_demo_keep_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = cli("demo", "--keep", "notes.txt", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "notes.txt" in lines[0] and "not a folder" in lines[0], result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P (no cwd on sys.path) is 3.11+")
def test_demo_from_a_folder_holding_packages_of_the_same_names(tmp_path: Path) -> None:
    for package in ("studio", "mac_side", "win_side", "renderloop"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('the local {package}/ was imported')\n")
    # as the installed console script starts it: this folder is not on sys.path
    result = subprocess.run([sys.executable, "-P", "-m", "renderloop", "demo", "--images", "2"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was imported" not in result.stdout + result.stderr


def test_a_failed_render_says_how_to_render_it_again(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    box.write("batches/hero.yaml", BATCH_YAML)  # night-train is flux-schnell, whose files the server lacks
    git(box.mac, "add", "batches")
    git(box.mac, "commit", "-q", "-m", "batch: hero")
    git(box.mac, "push", "-q")
    with ComfyServer(tmp_path / "comfyui", models=ZIT_FILES, render_seconds=0.01) as server:
        worker = cli("worker", "--repo", str(box.worker), "--comfyui", server.url, "--once")
    assert worker.returncode == 0, worker.stderr
    pulled = git(box.mac, "pull", "-q")
    said = pulled.stdout + pulled.stderr
    assert "night-train: missing-model" in said, said
    assert "renderloop worker --retry-failed" in said, said
    review = (box.mac / "renders" / "hero" / "review.md").read_text()
    assert "renderloop worker --retry-failed" in review


def test_every_command_module_is_registered_once_under_its_own_name() -> None:
    """A new verb is its module in renderloop/commands plus one entry in main.COMMANDS; this holds the two together."""
    import pkgutil

    import renderloop.commands
    from renderloop.main import COMMANDS

    modules = sorted(m.name for m in pkgutil.iter_modules(renderloop.commands.__path__))
    assert sorted(COMMANDS) == modules and len(set(COMMANDS)) == len(COMMANDS)
    verbs = _subparsers(build_parser())
    assert sorted(verbs) == modules  # each module registers the verb of its own name, and only that one
    for verb, command in verbs.items():
        runs = [p.get_default("run") for p in _every_parser(command).values() if p.get_default("run") is not None]
        assert runs and {run.__module__ for run in runs} == {f"renderloop.commands.{verb}"}, verb


@pytest.mark.parametrize("argv, verb", [
    (["hook", "post-merge"], "hook"),
    (["--debug", "status"], "status"),
    (["-C", "status", "review"], "review"),  # -C's folder may be named like a verb
    (["-Cstudio", "-C", "x", "--debug", "stats", "--json"], "stats"),
    (["--help"], None), (["statsu"], None), ([], None), (["-C"], None), (["--version"], None),
])
def test_only_the_verb_that_runs_is_read(argv: list[str], verb: str | None) -> None:
    from renderloop.main import verb_in

    assert verb_in(argv) == verb
    if verb is not None:
        assert list(_subparsers(build_parser(only=verb))) == [verb]


def test_a_hook_imports_no_other_command_and_a_misspelt_verb_lists_them_all(tmp_path: Path) -> None:
    """A git hook starts renderloop on every commit and pull: it pays for its own verb only."""
    probe = ("import sys\nfrom renderloop.main import main\ntry:\n    main(['hook', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('renderloop.commands.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['renderloop.commands.hook']"
    typo = cli("statsu", cwd=tmp_path)
    assert typo.returncode == 2 and "invalid choice: 'statsu'" in typo.stderr and "'worker'" in typo.stderr
    debug = cli("-C", str(tmp_path), "--debug", "status", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr, debug.stderr  # options before the verb still count
    assert debug.stderr.rstrip().endswith("is not a renderloop studio (no renderloop.yaml): run `renderloop init`")
