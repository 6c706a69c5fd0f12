"""The bundled workflows/ files, checked without ComfyUI (pure tier).

Every file parses, has a version the frontend loads, links consistent in both directions, only
node types from this pack or ComfyUI's core, the pack's cnr_id on its nodes, a same-name JPEG
thumbnail, and a line in workflows/README.md. The live node definitions are checked by the host
tier (test_workflows_host.py) and the real frontend by the browser check (test_workflows_browser.py).
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from animekit.prompting.profile import load_profile
from support.workflow_files import (
    CORE_NODE_TYPES,
    WORKFLOWS_DIR,
    load,
    node_type_problems,
    pack_node_ids,
    structure_problems,
    workflow_paths,
)
from workflows.specs import WORKFLOWS

PATHS = workflow_paths()
IDS = [path.stem for path in PATHS]
THUMBNAIL_MAX_BYTES = 100_000


def test_the_specified_workflows_are_all_there():
    assert sorted(IDS) == sorted(spec.name for spec in WORKFLOWS)
    assert not list(WORKFLOWS_DIR.glob("*.JSON")) and not list(WORKFLOWS_DIR.glob("*.jpeg"))


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_parses_with_a_supported_version_and_sound_links(path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert structure_problems(workflow) == []


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_uses_only_core_and_animekit_nodes_with_their_cnr_id(path):
    assert node_type_problems(load(path), pack_node_ids()) == []


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_explains_itself_in_a_note(path):
    notes = [node for node in load(path)["nodes"] if node["type"] == "MarkdownNote"]
    assert notes and all(note["widgets_values"][0].startswith("# ") for note in notes[:1])


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_has_a_small_jpeg_thumbnail(path):
    thumbnail = path.with_suffix(".jpg")
    assert thumbnail.is_file(), f"{thumbnail.name} is missing (the templates browser shows it)"
    assert thumbnail.stat().st_size < THUMBNAIL_MAX_BYTES
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG"
        assert 256 <= image.width <= 640 and image.height >= 64


def test_readme_links_each_workflow_with_its_thumbnail_and_a_description():
    readme = (WORKFLOWS_DIR / "README.md").read_text(encoding="utf-8")
    for spec in WORKFLOWS:
        assert f"]({spec.name}.json)" in readme, f"README does not link {spec.name}.json"
        assert f"]({spec.name}.jpg)" in readme, f"README does not show {spec.name}.jpg"
        assert spec.summary in readme, f"README lacks the one-line description of {spec.name}"



# KSampler's widgets as the frontend stores them: the seed's control value follows the seed.
KSAMPLER_WIDGETS = ("seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise")


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_samplers_and_clip_skip_are_the_profiles(path):
    """CFG, sampler, scheduler, steps of full passes and clip skip come from the prompt profile in use."""
    nodes = load(path)["nodes"]
    profiles = {node["widgets_values"][0] for node in nodes if node["type"] == "AnimeKitAspectPreset"}
    assert len(profiles) == 1, profiles
    card = load_profile(profiles.pop()).sampling
    samplers = [node["widgets_values"] for node in nodes if node["type"] == "KSampler"]
    assert samplers and all(len(values) == len(KSAMPLER_WIDGETS) for values in samplers)
    for values in (dict(zip(KSAMPLER_WIDGETS, widgets)) for widgets in samplers):
        assert (values["cfg"], values["sampler_name"], values["scheduler"]) == (card.cfg, card.sampler, card.scheduler)
        if values["denoise"] == 1.0:  # a hires pass re-samples with fewer steps
            assert values["steps"] == card.steps
    skips = [node["widgets_values"] for node in nodes if node["type"] == "CLIPSetLastLayer"]
    assert skips == ([[-card.clip_skip]] * len(skips) if card.clip_skip else [])
    assert bool(skips) == bool(card.clip_skip)


def test_core_allowlist_names_only_types_the_workflows_use():
    used = {node["type"] for path in PATHS for node in load(path)["nodes"]}
    assert sorted(CORE_NODE_TYPES - used) == []
