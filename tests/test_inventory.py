"""studio.inventory: batch files are parsed once per content and settings."""
from __future__ import annotations

from pathlib import Path

from mac_side.init import init
from studio.config import load_config
from studio.inventory import load_batches
from studio.layout import Studio

BATCH = "version: 1\nmodel: flux-schnell\nprompts:\n  - slug: one\n    prompt: one\n"


def test_unchanged_files_are_not_parsed_again(tmp_path: Path) -> None:
    init(tmp_path / "s")
    studio = Studio.at(tmp_path / "s")
    (studio.batches_dir / "a.yaml").write_text(BATCH)
    (studio.batches_dir / "bad.yaml").write_text("version: 1\nprompts: []\n")
    config = load_config(studio)
    first = load_batches(studio, config)
    second = load_batches(studio, load_config(studio))  # a fresh but equal config
    assert second.batches["a"] is first.batches["a"]
    assert second.invalid["bad"] is first.invalid["bad"]
    # new bytes: parsed anew
    (studio.batches_dir / "a.yaml").write_text(BATCH.replace("prompt: one", "prompt: two"))
    third = load_batches(studio, config)
    assert third.batches["a"] is not first.batches["a"]
    assert third.batches["a"].jobs[0].spec.prompt == "two"
    # new settings: resolved anew (the model's default steps changed)
    text = studio.config_path.read_text().replace("    steps: 4\n", "    steps: 6\n", 1)
    studio.config_path.write_text(text)
    fourth = load_batches(studio, load_config(studio))
    assert fourth.batches["a"].jobs[0].spec.steps == 6
