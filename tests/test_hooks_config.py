"""The pre-commit hook checks renderloop.yaml and the workflows it binds, as they are staged."""
from __future__ import annotations

import json
import shutil

from tests.comfyui_server import shared_file
from tests.helpers import Sandbox, git

SHARED = shared_file("workflows")

MODEL = """\
  my-flux:
    width: 1024
    height: 1024
    comfyui:
      workflow: workflows/my-flux.api.json
      bind: {prompt: "CLIP Text Encode (Positive Prompt).text", seed: "%s"}
"""


def add_model(sandbox: Sandbox, seed_binding: str) -> None:
    config = sandbox.mac / "renderloop.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("models:\n", "models:\n" + MODEL % seed_binding, 1)
    config.write_text(text, encoding="utf-8", newline="\n")


def test_a_binding_to_an_unknown_input_stops_the_commit(sandbox: Sandbox) -> None:
    (sandbox.mac / "workflows").mkdir()
    shutil.copy(SHARED / "flux-schnell.api.json", sandbox.mac / "workflows" / "my-flux.api.json")
    add_model(sandbox, "31.sead")
    git(sandbox.mac, "add", "renderloop.yaml", "workflows")
    result = git(sandbox.mac, "commit", "-m", "my workflow", check=False)
    assert result.returncode != 0
    assert "renderloop.yaml:" in result.stderr and "sead" in result.stderr
    line = int(result.stderr.split("renderloop.yaml:")[1].split(":")[0])
    assert "bind" in (sandbox.mac / "renderloop.yaml").read_text().splitlines()[line - 1]
    # fixed, it commits
    add_model_text = (sandbox.mac / "renderloop.yaml").read_text().replace("31.sead", "31.seed")
    (sandbox.mac / "renderloop.yaml").write_text(add_model_text, encoding="utf-8", newline="\n")
    git(sandbox.mac, "add", "renderloop.yaml")
    result = git(sandbox.mac, "commit", "-m", "my workflow", check=False)
    assert result.returncode == 0, result.stderr


def test_the_staged_workflow_is_what_counts(sandbox: Sandbox) -> None:
    (sandbox.mac / "workflows").mkdir()
    workflow = sandbox.mac / "workflows" / "my-flux.api.json"
    shutil.copy(SHARED / "flux-schnell.api.json", workflow)
    add_model(sandbox, "31.seed")
    git(sandbox.mac, "add", "renderloop.yaml", "workflows")
    # the working tree's workflow loses node 31 after staging: the staged one is valid
    graph = json.loads(workflow.read_text())
    graph.pop("31")
    workflow.write_text(json.dumps(graph), encoding="utf-8")
    assert git(sandbox.mac, "commit", "-m", "ok as staged", check=False).returncode == 0


def test_an_invalid_renderloop_yaml_stops_the_commit(sandbox: Sandbox) -> None:
    config = sandbox.mac / "renderloop.yaml"
    config.write_text(config.read_text().replace("    steps: 4\n", "    steps: 4\n    stpes: 3\n", 1), encoding="utf-8")
    git(sandbox.mac, "add", "renderloop.yaml")
    result = git(sandbox.mac, "commit", "-m", "typo", check=False)
    assert result.returncode != 0
    assert "renderloop.yaml:" in result.stderr and "unknown key 'stpes'" in result.stderr
