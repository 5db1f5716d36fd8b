"""Issue 9, item 6: hard ceilings, control characters, YAML 1.2 numbers.

The ceilings are compiled into renderloop (studio/limits.py); renderloop.yaml
can lower them, never raise them, and a raise is refused naming its line.
Control characters are refused where they do not belong; numbers are read
as YAML 1.2 reads them (decimal only), in every file.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from studio.batch import load_batch_bytes
from studio.config import StudioConfig, builtin_config, load_config
from studio.errors import InvalidFile
from studio.layout import Studio
from studio.limits import CEILINGS, MAX_PIXELS, MAX_SIDE, Limits
from tests.helpers import Sandbox
from tests.test_batch_schema import ONE, REL, only_problem
from tests.security.helpers import GOOD, push, remote_files, run_worker

CONFIG = builtin_config()
MODEL = """\
version: 1
models:
  tiny:
    width: 512
    height: 512
"""


def config_problem(tmp_path: Path, text: str) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "renderloop.yaml").write_text(text, encoding="utf-8", newline="\n")
    with pytest.raises(InvalidFile) as caught:
        load_config(Studio.at(tmp_path))
    assert len(caught.value.problems) == 1, caught.value.problems
    return str(caught.value.problems[0])


def config_with(tmp_path: Path, text: str) -> StudioConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "renderloop.yaml").write_text(text, encoding="utf-8", newline="\n")
    return load_config(Studio.at(tmp_path))


# -- the ceilings cannot be raised ------------------------------------------------------------------


def test_max_side_cannot_be_raised(tmp_path: Path) -> None:
    assert config_problem(tmp_path, MODEL + "    max_side: 32768\n") == (
        f"renderloop.yaml:6: models.tiny.max_side: max_side 32768 is above renderloop's ceiling of {MAX_SIDE}; "
        "renderloop.yaml can lower it, never raise it (got 32768)"
    )


def test_max_pixels_cannot_be_raised(tmp_path: Path) -> None:
    assert config_problem(tmp_path, MODEL + "    max_pixels: 536870912\n") == (
        f"renderloop.yaml:6: models.tiny.max_pixels: max_pixels 536870912 is above renderloop's ceiling of "
        f"{MAX_PIXELS}; renderloop.yaml can lower it, never raise it (got 536870912)"
    )


def test_the_ceilings_themselves_are_accepted(tmp_path: Path) -> None:
    config = config_with(tmp_path, MODEL + f"    max_side: {MAX_SIDE}\n    max_pixels: {MAX_PIXELS}\n")
    assert (config.models["tiny"].max_side, config.models["tiny"].max_pixels) == (MAX_SIDE, MAX_PIXELS)


@pytest.mark.parametrize("key", sorted(CEILINGS))
def test_no_limit_can_be_raised(tmp_path: Path, key: str) -> None:
    raised = CEILINGS[key] + 1
    assert config_problem(tmp_path, MODEL + f"limits:\n  {key}: {raised}\n") == (
        f"renderloop.yaml:7: limits.{key}: {raised} is above renderloop's ceiling of {CEILINGS[key]}; "
        f"renderloop.yaml can lower it, never raise it (got {raised})"
    )


def test_the_limits_table_and_the_settings_name_the_same_ceilings() -> None:
    assert set(Limits.model_fields) == set(CEILINGS)
    assert Limits().model_dump() == CEILINGS


def test_a_32768_wide_image_is_refused_even_when_the_studio_asks(sandbox: Sandbox) -> None:
    """The reproduction of the issue: a pushed config raising max_side, and a batch using it."""
    config = (sandbox.mac / "renderloop.yaml").read_text().replace("max_side: 2048", "max_side: 32768")
    huge = GOOD.replace("width: 64", "width: 32768").replace("height: 64", "height: 16384")
    push(sandbox, files={"renderloop.yaml": config, "batches/huge.yaml": huge})
    first = run_worker(sandbox)
    second = run_worker(sandbox)  # the first pulled it while running; this one starts with it
    assert second.returncode == 1
    assert "max_side 32768 is above renderloop's ceiling of 8192" in first.stderr + second.stderr
    assert not any(name.endswith(".png") for name in remote_files(sandbox))


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("    width: 16384\n", f"6: prompts[0].width: Input should be less than or equal to {MAX_SIDE} (got 16384)"),
        ("    height: 16384\n", f"6: prompts[0].height: Input should be less than or equal to {MAX_SIDE} (got 16384)"),
        ("    steps: 1001\n", "6: prompts[0].steps: Input should be less than or equal to 1000 (got 1001)"),
        ("    sampler: " + "s" * 65 + "\n", "6: prompts[0].sampler: String should have at most 64 characters"),
        ("    scheduler: " + "s" * 65 + "\n", "6: prompts[0].scheduler: String should have at most 64 characters"),
        ("    archetype: " + "a" * 81 + "\n", "6: prompts[0].archetype: String should have at most 80 characters"),
        ("    negative: " + "n" * 20_001 + "\n", "6: prompts[0].negative: String should have at most 20000 characters"),
        ("    cues: [" + "c" * 301 + "]\n", "6: prompts[0].cues[0]: String should have at most 300 characters"),
        ("    cues: [" + ", ".join(["c"] * 51) + "]\n", "6: prompts[0].cues: List should have at most 50 items"),
    ],
    ids=["width", "height", "steps", "sampler", "scheduler", "archetype", "negative", "cue", "cues"],
)
def test_each_compiled_ceiling_holds_in_a_batch(extra: str, expected: str) -> None:
    assert only_problem(ONE + extra).startswith(f"{REL}:{expected}")


def test_the_prompt_length_ceiling_holds() -> None:
    text = ONE.replace("A harbor at dawn", "p" * 20_001)
    assert only_problem(text).startswith(f"{REL}:5: prompts[0].prompt: String should have at most 20000 characters")


def test_the_prompts_per_batch_ceiling_holds() -> None:
    body = "".join(f"  - {{slug: s{i}, prompt: x}}\n" for i in range(10_001))
    found = only_problem("version: 1\nmodel: flux-schnell\nprompts:\n" + body)
    assert found.startswith(f"{REL}:4: prompts: List should have at most 10000 items after validation, not 10001")


def test_the_batch_file_size_ceiling_holds() -> None:
    raw = (ONE + "#" * (2 * 1024 * 1024)).encode()
    assert only_problem(raw) == f"{REL}:1: file is 2.1 MB; the limit is 2.1 MB"


# -- lowered limits are enforced, at the line of the value ------------------------------------------


@pytest.mark.parametrize(
    "key, extra, line, where, length",
    [
        ("prompt_chars", None, 5, "prompts[0].prompt", 16),
        ("negative_chars", "    negative: " + "n" * 11 + "\n", 6, "prompts[0].negative", 11),
        ("cue_chars", "    cues: [" + "c" * 11 + "]\n", 6, "prompts[0].cues", 11),
        ("sampler_chars", "    sampler: " + "s" * 11 + "\n", 6, "prompts[0].sampler", 11),
        ("scheduler_chars", "    scheduler: " + "s" * 11 + "\n", 6, "prompts[0].scheduler", 11),
    ],
)
def test_a_lowered_limit_is_enforced(tmp_path: Path, key: str, extra: str | None, line: int, where: str,
                                      length: int) -> None:
    config = config_with(tmp_path, "version: 1\nmodels:\n  flux-schnell: {}\nlimits:\n  " + key + ": 10\n")
    assert only_problem(ONE + (extra or ""), config=config) == (
        f"{REL}:{line}: {where}: {length} characters; renderloop.yaml limits.{key} allows at most 10"
    )


def test_a_lowered_prompts_per_batch_is_enforced(tmp_path: Path) -> None:
    config = config_with(tmp_path, "version: 1\nmodels:\n  flux-schnell: {}\nlimits:\n  prompts_per_batch: 2\n")
    text = "version: 1\nmodel: flux-schnell\nprompts:\n" + "".join(f"  - {{slug: s{i}, prompt: x}}\n" for i in range(3))
    assert only_problem(text, config=config) == (
        f"{REL}:6: prompts: 3 prompts; renderloop.yaml limits.prompts_per_batch allows at most 2"
    )


def test_a_lowered_batch_size_is_enforced(tmp_path: Path) -> None:
    config = config_with(tmp_path, "version: 1\nmodels:\n  flux-schnell: {}\nlimits:\n  batch_bytes: 100\n")
    assert only_problem(ONE + "#" * 100 + "\n", config=config) == f"{REL}:1: file is 0.0 MB; the limit is 0.0 MB"


def test_a_lowered_max_side_is_enforced(tmp_path: Path) -> None:
    config = config_with(tmp_path, "version: 1\nmodels:\n  flux-schnell: {max_side: 1024}\n")
    assert only_problem(ONE + "    width: 2048\n", config=config) == (
        f"{REL}:6: width 2048 is outside flux-schnell's range 64-1024"
    )


# -- control characters ----------------------------------------------------------------------------

CONTROLS = {
    "NUL": ("\\0", "\x00"),
    "ESC": ("\\e", "\x1b"),
    "DEL": ("\\x7f", "\x7f"),
    "C1-NEL": ("\\x85", "\x85"),
    "C1-CSI": ("\\x9b", "\x9b"),
    "RLO": ("\\u202E", "\u202e"),
    "LRE": ("\\u202A", "\u202a"),
    "RLI": ("\\u2067", "\u2067"),
    "PDI": ("\\u2069", "\u2069"),
    "LS": ("\\u2028", "\u2028"),
    "PS": ("\\u2029", "\u2029"),
}
FIELDS = ("prompt", "negative", "cues", "sampler", "scheduler", "archetype")


@pytest.mark.parametrize("name", sorted(CONTROLS))
@pytest.mark.parametrize("field", FIELDS)
def test_control_characters_are_refused_in_each_text_field(name: str, field: str) -> None:
    escape, char = CONTROLS[name]
    value = f"x{char}y"
    if field == "prompt":
        text, line = ONE.replace("A harbor at dawn", f"x{escape}y"), 5
    elif field == "cues":
        text, line = ONE + f'    cues: ["x{escape}y"]\n', 6
    else:
        text, line = ONE + f'    {field}: "x{escape}y"\n', 6
    where = "prompts[0].cues" if field == "cues" else f"prompts[0].{field}"
    found = only_problem(text)
    assert found.startswith(f"{REL}:{line}: {where}")
    assert f"control character {char!r} is not allowed in {value!r}" in found


@pytest.mark.parametrize("field", ["cues", "sampler", "scheduler", "archetype"])
def test_a_line_break_is_refused_in_one_line_fields(field: str) -> None:
    text = ONE + (f'    cues: ["x\\ny"]\n' if field == "cues" else f'    {field}: "x\\ny"\n')
    assert "control character '\\n' is not allowed in 'x\\ny'" in only_problem(text)


def test_a_line_break_and_a_tab_are_fine_in_a_prompt_and_a_negative() -> None:
    text = ONE.replace("A harbor at dawn", "A harbor\\n\\tat dawn") + '    negative: "blur\\nnoise"\n'
    loaded = load_batch_bytes(text.encode(), REL, CONFIG)
    assert loaded.jobs[0].spec.prompt == "A harbor\n\tat dawn" and loaded.jobs[0].spec.negative == "blur\nnoise"


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u2028", "\x85"])
def test_a_raw_bidi_or_separator_character_anywhere_in_the_file_is_refused(char: str) -> None:
    text = ONE + f"# a comment{char}that reads backwards\n"
    assert only_problem(text) == f"{REL}:6: control character {char!r} is not allowed in the file"


def test_control_characters_in_the_config_sampler_are_refused(tmp_path: Path) -> None:
    assert config_problem(tmp_path, MODEL + '    sampler: "euler\\u202e"\n') == (
        "renderloop.yaml:6: models.tiny.sampler: control character '\\u202e' is not allowed in 'euler\\u202e'"
    )


# -- YAML 1.2 numbers ------------------------------------------------------------------------------

NOT_A_NUMBER = (
    "is not read as a number: write it in plain decimal digits, like 1024 "
    "(YAML 1.2 reads sexagesimal 1:30, hex 0x400, octal 0o17 and underscores 1_024 as text)"
)


@pytest.mark.parametrize(
    "extra, where, value",
    [
        ("    seed: 1:30\n", "seed", "1:30"),
        ("    width: 0x400\n", "width", "0x400"),
        ("    width: 1_024\n", "width", "1_024"),
        ("    seed: 0o17\n", "seed", "0o17"),
        ("    steps: 0b101\n", "steps", "0b101"),
        ("    cfg: 1:30.5\n", "cfg", "1:30.5"),
        ("    cfg: 1_0.5\n", "cfg", "1_0.5"),
    ],
    ids=["sexagesimal", "hex", "underscores", "octal", "binary", "sexagesimal-float", "underscore-float"],
)
def test_yaml_1_1_numbers_are_text_and_refused(extra: str, where: str, value: str) -> None:
    assert only_problem(ONE + extra) == f"{REL}:6: prompts[0].{where}: {value!r} {NOT_A_NUMBER}"


def test_yaml_1_1_numbers_in_the_config_are_refused_too(tmp_path: Path) -> None:
    assert config_problem(tmp_path, MODEL + "    max_side: 0x800\n") == (
        f"renderloop.yaml:6: models.tiny.max_side: '0x800' {NOT_A_NUMBER}"
    )


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "ON"])
def test_yaml_1_1_booleans_are_text_and_refused(tmp_path: Path, word: str) -> None:
    text = MODEL + f"    fal: {{endpoint: fal-ai/x/y, round_up_mp: {word}}}\n"
    assert config_problem(tmp_path, text) == (
        f"renderloop.yaml:6: models.tiny.fal.round_up_mp: {word!r} is not read as a boolean: write true or false"
    )


def test_explicit_yaml_tags_cannot_bring_the_old_forms_back() -> None:
    assert only_problem(ONE + "    seed: !!int 0x10\n") == (
        f"{REL}:6: YAML error at column 11: '0x10' is not a decimal integer"
    )
    assert only_problem(ONE + "    steps: !!int 1_0\n") == (
        f"{REL}:6: YAML error at column 12: '1_0' is not a decimal integer"
    )


def test_yaml_1_2_values_read_as_expected() -> None:
    text = ONE.replace('"A harbor at dawn"', "2024-01-01") + "    seed: 0777\n    cfg: 1e1\n"
    job = load_batch_bytes(text.encode(), REL, CONFIG).jobs[0]
    assert (job.spec.prompt, job.spec.seed, job.spec.cfg) == ("2024-01-01", 777, 10.0)
    yes = load_batch_bytes(ONE.replace('"A harbor at dawn"', "yes").encode(), REL, CONFIG).jobs[0]
    assert yes.spec.prompt == "yes"  # YAML 1.1 read this as the boolean true
