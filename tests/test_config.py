"""``renderloop.yaml``: the built-in settings, and every refusal as ``path:line: message``."""
from __future__ import annotations

from pathlib import Path

import pytest

from mac_side.init import init
from studio.config import DEFAULT_CONFIG_YAML, StudioConfig, builtin_config, load_config
from studio.errors import InvalidFile
from studio.layout import Studio

BASE = """\
version: 1
models:
  tiny:
    width: 512
    height: 512
"""


def write_config(root: Path, text: str | bytes) -> Studio:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "renderloop.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="\n")
    return Studio.at(root)


def config_problems(root: Path, text: str | bytes) -> list[str]:
    with pytest.raises(InvalidFile) as caught:
        load_config(write_config(root, text))
    return [str(p) for p in caught.value.problems]


def config_problem(root: Path, text: str | bytes) -> str:
    found = config_problems(root, text)
    assert len(found) == 1, found
    return found[0]


def test_a_new_studio_has_the_builtin_models(tmp_path: Path) -> None:
    init(tmp_path / "s")
    studio = Studio.at(tmp_path / "s")
    assert studio.config_path.read_text(encoding="utf-8") == DEFAULT_CONFIG_YAML
    config = load_config(studio)
    assert config == builtin_config()
    assert list(config.models) == ["flux-schnell", "flux-dev", "z-image-turbo", "qwen-image"]
    sizes = {name: (m.width, m.height, m.steps, m.max_side, m.max_pixels) for name, m in config.models.items()}
    assert sizes == {
        "flux-schnell": (1024, 1024, 4, 2048, 4194304),
        "flux-dev": (1024, 1024, 20, 2048, 4194304),
        "z-image-turbo": (1024, 1024, 8, 2048, 4194304),
        "qwen-image": (1328, 1328, 20, 2048, 4194304),
    }
    for name, model in config.models.items():
        assert model.comfyui is not None and model.comfyui.graph == name
        assert model.fal is not None and model.fal.usd_per_mp > 0
        assert model.mflux is not None and model.mflux.argv


def test_a_minimal_config_takes_the_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "models:\n  tiny: {}\n"))
    tiny = config.models["tiny"]
    assert (config.version, tiny.width, tiny.height, tiny.steps, tiny.min_side, tiny.max_side) == (1, 1024, 1024, None, 64, 4096)


def test_a_float_setting_takes_an_int(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, BASE + "    cfg: 4\n"))
    assert config.models["tiny"].cfg == 4.0 and isinstance(config.models["tiny"].cfg, float)


def test_a_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    raw = b"\xef\xbb\xbf" + DEFAULT_CONFIG_YAML.replace("\n", "\r\n").encode("utf-8")
    assert load_config(write_config(tmp_path / "a", raw)) == builtin_config()
    bad = b"\xef\xbb\xbf" + (BASE + "    steps: many\n").replace("\n", "\r\n").encode("utf-8")
    assert config_problem(tmp_path / "b", bad) == (
        "renderloop.yaml:6: models.tiny.steps: Input should be a valid integer (got 'many')"
    )


def test_no_config_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile) as caught:
        load_config(Studio.at(tmp_path))
    assert str(caught.value) == "renderloop.yaml:1: no renderloop.yaml here: run `renderloop init` first"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("models: {}\n", "1: models: list at least one model"),
        ("version: 1\n", "1: missing required key 'models'"),
        ("version: 2\nmodels: {tiny: {}}\n", "1: version: Input should be 1 (got 2)"),
        ("- a\n", "1: renderloop.yaml must be a mapping of settings"),
        (BASE + "colour: red\n", "6: unknown key 'colour'"),
        (BASE + "    colour: red\n", "6: unknown key 'colour' in models.tiny"),
        (BASE.replace("width: 512", "width: '512'"), "4: models.tiny.width: Input should be a valid integer (got '512')"),
        (BASE + "    cfg: '3.5'\n", "6: models.tiny.cfg: Input should be a valid number (got '3.5')"),
        (BASE + "    cfg: true\n", "6: models.tiny.cfg: Input should be a valid number (got True)"),
        (BASE + "    cfg: .nan\n", "6: models.tiny.cfg: Input should be a finite number (got nan)"),
        (BASE + "    steps: 0\n", "6: models.tiny.steps: Input should be greater than 0 (got 0)"),
    ],
    ids=[
        "no-models", "missing-models", "version", "not-a-mapping", "unknown-top", "unknown-model-key", "width-str",
        "cfg-str", "cfg-bool", "cfg-nan", "steps-0",
    ],
)
def test_bad_settings_are_refused_at_their_line(tmp_path: Path, text: str, expected: str) -> None:
    assert config_problem(tmp_path, text) == f"renderloop.yaml:{expected}"


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("    width: 1020\n", "default width 1020 is not a multiple of 8"),
        ("    height: 4104\n", "default height 4104 is outside min_side-max_side 64-4096"),
        ("    min_side: 1024\n", "default width 512 is outside min_side-max_side 1024-4096"),
        ("    min_side: 2048\n    max_side: 1024\n", "min_side 2048 is larger than max_side 1024"),
        ("    max_pixels: 100000\n", "default size 512x512 is more than max_pixels 100000"),
    ],
)
def test_a_model_default_size_must_pass_its_own_limits(tmp_path: Path, extra: str, expected: str) -> None:
    # a default that fails its limits would make every batch relying on it fail, far from the cause
    text = BASE.replace("    width: 512\n", "") if "width:" in extra else BASE
    text = text.replace("    height: 512\n", "") if "height:" in extra else text
    assert config_problem(tmp_path, text + extra) == f"renderloop.yaml:3: models.tiny: {expected}"


@pytest.mark.parametrize(
    "comfyui, expected",
    [
        ("{}", "name exactly one of 'graph' (a built-in graph) or 'workflow' (a file)"),
        ("{graph: flux-schnell, workflow: w.json}", "name exactly one of 'graph' (a built-in graph) or 'workflow' (a file)"),
        ("{graph: flux-schnell, bind: {seed: '3.seed'}}", "'bind' goes with 'workflow'"),
        ("{graph: flux-schnell, clip: x.safetensors}", "'clip' does not apply to graph flux-schnell; it takes unet, clip_l, t5xxl, vae, weight_dtype, checkpoint"),
    ],
)
def test_comfyui_settings(tmp_path: Path, comfyui: str, expected: str) -> None:
    found = config_problem(tmp_path, BASE + f"    comfyui: {comfyui}\n")
    assert found.startswith(f"renderloop.yaml:6: models.tiny.comfyui: {expected}")


def test_an_unknown_graph_names_the_choices(tmp_path: Path) -> None:
    found = config_problem(tmp_path, BASE + "    comfyui: {graph: sdxl}\n")
    assert found.startswith("renderloop.yaml:6: models.tiny.comfyui.graph: Input should be 'flux-schnell', 'flux-dev'")
    assert found.endswith("(got 'sdxl')")


def test_a_missing_workflow_file_is_named_at_its_line(tmp_path: Path) -> None:
    found = config_problem(tmp_path, BASE + "    comfyui:\n      workflow: workflows/mine.api.json\n")
    assert found.startswith("renderloop.yaml:7: models.tiny.comfyui.workflow: ")
    assert "workflows/mine.api.json" in found


@pytest.mark.parametrize(
    "fal, expected",
    [
        ("{endpoint: schnell}", "models.tiny.fal.endpoint: endpoint 'schnell' is not a fal endpoint like 'fal-ai/flux/schnell'"),
        ("{endpoint: fal-ai/flux/schnell, usd_per_mp: -0.1}", "models.tiny.fal.usd_per_mp: Input should be greater than or equal to 0 (got -0.1)"),
        ("{endpoint: fal-ai/flux/schnell, arguments: {seed: 3}}", "models.tiny.fal.arguments: 'seed' comes from the batch's spec; remove it from 'arguments'"),
    ],
)
def test_fal_settings(tmp_path: Path, fal: str, expected: str) -> None:
    assert config_problem(tmp_path, BASE + f"    fal: {fal}\n") == f"renderloop.yaml:6: {expected}"


def test_mflux_settings(tmp_path: Path) -> None:
    assert config_problem(tmp_path, BASE + "    mflux: {program: /bin/sh}\n") == (
        "renderloop.yaml:6: models.tiny.mflux.program: program '/bin/sh' is not an mflux program: name one like "
        "mflux-generate or mflux-generate-z-image-turbo (no folder: where it is installed is this Mac's mac.mflux_bin)"
    )
    assert config_problem(tmp_path, BASE + "    mflux: {program: mflux-generate, model: '--help'}\n") == (
        "renderloop.yaml:6: models.tiny.mflux.model: model '--help' is not an mflux model name like schnell "
        "or owner/repository"
    )
    found = config_problem(tmp_path, BASE + "    mflux: {program: mflux-generate, quantize: 7}\n")
    assert found.startswith("renderloop.yaml:6: models.tiny.mflux.quantize: Input should be 3, 4, 5, 6 or 8")


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = BASE + "    steps: x\n  other:\n    cfg: y\n  third:\n    steps: 0\n"
    assert config_problems(tmp_path, text) == [
        "renderloop.yaml:6: models.tiny.steps: Input should be a valid integer (got 'x')",
        "renderloop.yaml:8: models.other.cfg: Input should be a valid number (got 'y')",
        "renderloop.yaml:10: models.third.steps: Input should be greater than 0 (got 0)",
    ]


def test_hostile_yaml_in_the_config_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    tag = BASE + f"    sampler: !!python/object/apply:os.system ['touch {marker.as_posix()}']\n"
    assert config_problem(tmp_path / "a", tag).startswith(
        "renderloop.yaml:6: YAML tag '!!python/object/apply:os.system' is not allowed"
    )
    assert not marker.exists()
    laughs = BASE + "    x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"    x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]\n" for i in range(1, 7)
    )
    assert config_problem(tmp_path / "b", laughs) == (
        "renderloop.yaml:11: the document expands to more than 200000 values (YAML anchors and aliases); "
        "write it out plainly"
    )
    assert config_problem(tmp_path / "c", b"models:\n  tiny: {sampler: caf\xe9}\n") == (
        "renderloop.yaml:2: not valid UTF-8: byte e9 in b'\\xe9}\\n'; save the file as UTF-8"
    )


def test_the_builtin_config_is_a_valid_studio_config() -> None:
    config = builtin_config()
    assert isinstance(config, StudioConfig)
    again = StudioConfig.model_validate(config.model_dump())
    assert again == config
