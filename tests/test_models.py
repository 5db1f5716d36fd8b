"""The table of built-in models is the one source: the template, the validator and the graph builders follow it."""
from __future__ import annotations

from pathlib import Path

import pytest

from studio.config import ComfyUIModel, ModelSettings, builtin_config, load_config
from studio.layout import Studio
from studio.models import BUILTIN, BUILTIN_MODELS, GRAPH_NAMES, BuiltinModel
from win_side.backends.comfyui.graphs import BUILDERS

ROOT = Path(__file__).resolve().parents[1]


def test_every_builtin_model_has_a_graph_builder_and_every_builder_a_model() -> None:
    assert sorted(BUILDERS) == sorted(GRAPH_NAMES)
    assert len(GRAPH_NAMES) == len(BUILTIN_MODELS) == len(set(GRAPH_NAMES))


def test_the_validator_takes_exactly_the_table_graph_names() -> None:
    for name in GRAPH_NAMES:
        assert ComfyUIModel(graph=name).graph == name
    with pytest.raises(ValueError, match="Input should be " + " ".join(f"'{n}'.*" for n in GRAPH_NAMES)):
        ComfyUIModel.model_validate({"graph": "sdxl"})


@pytest.mark.parametrize("model", BUILTIN_MODELS, ids=lambda m: m.name)
def test_every_setting_a_graph_takes_is_a_comfyui_field(model: BuiltinModel) -> None:
    fields = set(ComfyUIModel.model_fields) - {"graph", "workflow", "bind"}
    assert set(model.settings) <= fields and set(model.checkpoint_settings) <= fields
    assert set(model.files) | set(model.tuning) <= set(model.settings)


def as_table(name: str, settings: ModelSettings) -> BuiltinModel:
    """A model of renderloop.yaml read back into a row of the table."""
    comfy, fal, mflux = settings.comfyui, settings.fal, settings.mflux
    assert comfy is not None and comfy.graph == name and fal is not None and mflux is not None
    builtin = BUILTIN[name]
    return BuiltinModel(
        name, width=settings.width, height=settings.height, steps=settings.steps or 0, cfg=settings.cfg or 0.0,
        sampler=settings.sampler or "", scheduler=settings.scheduler or "",
        files={k: getattr(comfy, k) for k in builtin.files}, tuning={k: getattr(comfy, k) for k in builtin.tuning},
        checkpoint=builtin.checkpoint, fal_endpoint=fal.endpoint, fal_usd_per_mp=fal.usd_per_mp,
        mflux_program=mflux.program, mflux_model=mflux.model or "", negative_prompt=builtin.negative_prompt,
        max_side=settings.max_side, max_pixels=settings.max_pixels,
    )


def test_the_template_holds_every_builtin_model_with_its_defaults() -> None:
    config = builtin_config()
    assert list(config.models) == list(GRAPH_NAMES)
    for name, settings in config.models.items():
        assert as_table(name, settings) == BUILTIN[name]
        assert settings.comfyui is not None
        assert settings.comfyui.model_fields_set == {"graph", *BUILTIN[name].files, *BUILTIN[name].tuning}


def test_the_projects_own_renderloop_yaml_has_the_builtin_models() -> None:
    assert load_config(Studio.at(ROOT)).models == builtin_config().models
