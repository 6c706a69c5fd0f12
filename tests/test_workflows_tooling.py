"""The workflow tooling itself (pure): widget layout rules, the builder and the UI -> API conversion.

Runs on hand-written `/object_info` entries, so the rules are pinned down without a ComfyUI; the
host tier and the browser check then prove them against the live nodes and the real frontend.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.workflow_checks import node_problems, widget_problems
from support.workflow_files import WORKFLOWS_DIR, structure_problems
from support.workflow_ui_to_api import WorkflowFormatError, ui_to_api
from workflows.builder import WorkflowBuilder
from workflows.nodeinfo import input_specs, widget_value_count

SAMPLER_INFO = {  # V1 shape, like KSampler: sockets and widgets interleaved in the declaration
    "input": {
        "required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**64 - 1}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "sampler_name": (["euler", "euler_ancestral"],),
            "latent_image": ("LATENT",),
        },
        "optional": {"denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0})},
    },
    "input_order": {"required": ["model", "seed", "steps", "sampler_name", "latent_image"], "optional": ["denoise"]},
    "output": ["LATENT"],
    "output_name": ["LATENT"],
}
LOADER_INFO = {
    "input": {"required": {"ckpt_name": (["a.safetensors", "b.safetensors"],)}},
    "input_order": {"required": ["ckpt_name"]},
    "output": ["MODEL", "CLIP", "VAE"],
    "output_name": ["MODEL", "CLIP", "VAE"],
}
LATENT_INFO = {
    "input": {"required": {"width": ("INT", {"default": 512}), "height": ("INT", {"default": 512})}},
    "input_order": {"required": ["width", "height"]},
    "output": ["LATENT"],
    "output_name": ["LATENT"],
}
PROMPT_INFO = {  # V3 shape: io.Combo serializes as ("COMBO", {"options": [...]})
    "input": {
        "required": {
            "profile": ("COMBO", {"options": ["sd15-anime", "animagine-xl-3.0"], "default": "sd15-anime"}),
            "tags": ("STRING", {"multiline": True, "default": ""}),
            "count": ("INT", {"default": 1, "control_after_generate": True}),
            "seed": ("INT", {"default": 0, "control_after_generate": False}),
            "ratio": ("FLOAT", {"default": 1.0, "control_after_generate": True}),
            "style": ("COMBO", {"options": ["a", "b"], "control_after_generate": True}),
            "text": ("STRING", {"forceInput": True}),
        }
    },
    "input_order": {"required": ["profile", "tags", "count", "seed", "ratio", "style", "text"]},
    "output": ["STRING", "STRING"],
    "output_name": ["positive", "negative"],
}
CATALOG = {"Sampler": SAMPLER_INFO, "Loader": LOADER_INFO, "Latent": LATENT_INFO, "Prompt": PROMPT_INFO}


def test_widget_rules_follow_the_frontend():
    specs = {spec.name: spec for spec in input_specs(PROMPT_INFO)}
    assert [name for name, spec in specs.items() if spec.is_widget] == ["profile", "tags", "count", "seed", "ratio", "style"]
    assert specs["profile"].type == "COMBO" and specs["profile"].choices == ("sd15-anime", "animagine-xl-3.0")
    # control value: INT with control_after_generate, COMBO with it; never FLOAT; an explicit False wins over the name
    assert {name for name, spec in specs.items() if spec.has_control} == {"count", "style"}
    assert widget_value_count(PROMPT_INFO) == 8
    sampler = {spec.name: spec for spec in input_specs(SAMPLER_INFO)}
    assert sampler["seed"].has_control and not sampler["steps"].has_control  # the legacy `seed` name rule
    assert [spec.name for spec in input_specs(SAMPLER_INFO)][-1] == "denoise"  # optional inputs last
    assert widget_value_count(SAMPLER_INFO) == 5


def _txt2img(builder: WorkflowBuilder):
    loader = builder.add("Loader", {"ckpt_name": "b.safetensors"}, column=0)
    latent = builder.add("Latent", {"height": 768}, column=0)
    sampler = builder.add("Sampler", {"seed": 42, "sampler_name": "euler_ancestral"}, column=1,
                          controls={"seed": "randomize"}, title="Sampler A")
    builder.link(loader, "MODEL", sampler, "model")
    builder.link(latent, 0, sampler, "latent_image")
    builder.note("# Read me", column=2)
    return loader, latent, sampler


def test_builder_places_values_by_name_and_links_both_ways():
    builder = WorkflowBuilder(CATALOG, "t")
    _txt2img(builder)
    workflow = builder.build()
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert nodes[1]["widgets_values"] == ["b.safetensors"]
    assert nodes[2]["widgets_values"] == [512, 768]
    assert nodes[3]["widgets_values"] == [42, "randomize", 20, "euler_ancestral", 1.0]
    assert nodes[4]["widgets_values"] == ["# Read me"] and nodes[4]["type"] == "MarkdownNote"
    assert [s["name"] for s in nodes[3]["inputs"]] == ["model", "latent_image", "seed", "steps", "sampler_name", "denoise"]
    assert workflow["links"] == [[1, 1, 0, 3, 0, "MODEL"], [2, 2, 0, 3, 1, "LATENT"]]
    assert nodes[1]["outputs"][0]["links"] == [1] and nodes[1]["outputs"][1]["links"] == []
    assert nodes[3]["properties"] == {"cnr_id": "comfy-core", "Node name for S&R": "Sampler"}
    assert nodes[3]["order"] > nodes[1]["order"] and nodes[3]["order"] > nodes[2]["order"]
    assert structure_problems(workflow) == []


def test_builder_refuses_unknown_widgets_outputs_and_type_mismatches():
    builder = WorkflowBuilder(CATALOG, "t")
    with pytest.raises(KeyError, match="no widget input"):
        builder.add("Sampler", {"sed": 1}, column=0)
    loader = builder.add("Loader", column=0)
    sampler = builder.add("Sampler", column=1)
    with pytest.raises(KeyError, match="no output 'LORA'"):
        builder.link(loader, "LORA", sampler, "model")
    with pytest.raises(TypeError, match="wants MODEL"):
        builder.link(loader, "CLIP", sampler, "model")
    builder.link(loader, "MODEL", sampler, "model")
    with pytest.raises(ValueError, match="linked twice"):
        builder.link(loader, "MODEL", sampler, "model")


def test_structure_problems_catch_one_sided_links():
    builder = WorkflowBuilder(CATALOG, "t")
    _txt2img(builder)
    workflow = builder.build()
    workflow["nodes"][0]["outputs"][0]["links"] = []
    workflow["nodes"][2]["inputs"][1]["link"] = 99
    problems = structure_problems(workflow)
    assert "link 1 is not listed on node 1 output 0" in problems
    assert "link 2 is not the link of node 3 input 1" in problems
    assert "node 3 input latent_image names link 99, which does not end there" in problems
    workflow["version"] = 0.3
    assert any(p.startswith("version 0.3") for p in structure_problems(workflow))


def test_ui_to_api_maps_widgets_links_and_skips_notes():
    builder = WorkflowBuilder(CATALOG, "t")
    _txt2img(builder)
    prompt = ui_to_api(builder.build(), CATALOG)
    assert prompt == {
        "1": {"class_type": "Loader", "inputs": {"ckpt_name": "b.safetensors"}},
        "2": {"class_type": "Latent", "inputs": {"width": 512, "height": 768}},
        "3": {"class_type": "Sampler", "_meta": {"title": "Sampler A"},
              "inputs": {"seed": 42, "steps": 20, "sampler_name": "euler_ancestral", "denoise": 1.0,
                         "model": ["1", 0], "latent_image": ["2", 0]}},
    }


def test_ui_to_api_linked_widget_bypass_mute_and_primitive():
    builder = WorkflowBuilder(CATALOG, "t")
    loader, latent, sampler = _txt2img(builder)
    second = builder.add("Sampler", {"steps": 7}, column=2)
    builder.link(loader, "MODEL", second, "model")
    builder.link(sampler, "LATENT", second, "latent_image")
    workflow = builder.build()
    nodes = {node["id"]: node for node in workflow["nodes"]}

    nodes[3]["mode"] = 4  # bypass the first sampler: its LATENT input feeds the second sampler
    assert ui_to_api(workflow, CATALOG)["5"]["inputs"]["latent_image"] == ["2", 0]
    assert "3" not in ui_to_api(workflow, CATALOG)

    nodes[3]["mode"] = 2  # mute it: the second sampler's input is dropped
    assert "latent_image" not in ui_to_api(workflow, CATALOG)["5"]["inputs"]

    nodes[3]["mode"] = 0  # a frontend PrimitiveNode feeding `steps`: the widget value stands
    workflow["nodes"].append({"id": 9, "type": "PrimitiveNode", "mode": 0, "inputs": [],
                              "outputs": [{"name": "INT", "type": "INT", "links": [9]}], "widgets_values": [7, "fixed"]})
    steps_socket = next(s for s in nodes[5]["inputs"] if s["name"] == "steps")
    steps_socket["link"] = 9
    workflow["links"].append([9, 9, 0, 5, nodes[5]["inputs"].index(steps_socket), "INT"])
    assert ui_to_api(workflow, CATALOG)["5"]["inputs"]["steps"] == 7


def test_ui_to_api_refuses_wrong_widget_counts_and_unknown_types():
    builder = WorkflowBuilder(CATALOG, "t")
    _txt2img(builder)
    workflow = builder.build()
    workflow["nodes"][2]["widgets_values"] = [42, 20, "euler", 1.0]  # the seed's control value left out
    with pytest.raises(WorkflowFormatError, match=r"4 widget values, its widgets need 5"):
        ui_to_api(workflow, CATALOG)
    workflow["nodes"][2]["type"] = "ThirdPartySampler"
    with pytest.raises(WorkflowFormatError, match="unknown type 'ThirdPartySampler'"):
        ui_to_api(workflow, CATALOG)


def test_widget_problems_name_each_bad_value():
    node = {"id": 3, "type": "Sampler", "widgets_values": [-1, "sometimes", 2.5, "dpm_9", 1.5]}
    assert widget_problems(node, SAMPLER_INFO) == [
        "node 3 (Sampler) widget seed: -1 is below its minimum 0",
        "node 3 (Sampler) widget seed: control value 'sometimes' is not one of "
        "('fixed', 'increment', 'decrement', 'randomize')",
        "node 3 (Sampler) widget steps: 2.5 is not an integer",
        "node 3 (Sampler) widget sampler_name: 'dpm_9' is not one of its options ['euler', 'euler_ancestral']",
        "node 3 (Sampler) widget denoise: 1.5 is above its maximum 1.0",
    ]
    node["widgets_values"] = [1, "fixed", 20, "euler"]
    assert widget_problems(node, SAMPLER_INFO) == [
        "node 3 (Sampler) has 4 widget values; its widgets "
        "['seed+control', 'steps', 'sampler_name', 'denoise'] need 5"
    ]
    prompt_node = {"id": 1, "type": "Prompt", "widgets_values": ["pony", "", 1, "fixed", 0, 1.0, "a", "fixed"]}
    assert widget_problems(prompt_node, PROMPT_INFO) == [
        "node 1 (Prompt) widget profile: 'pony' is not one of its options ['sd15-anime', 'animagine-xl-3.0']"
    ]


def test_node_problems_check_sockets_and_types_against_the_definitions():
    builder = WorkflowBuilder(CATALOG, "t")
    _txt2img(builder)
    workflow = builder.build()
    assert node_problems(workflow, CATALOG) == []
    workflow["nodes"][2]["inputs"].pop(0)
    workflow["nodes"][0]["type"] = "Missing"
    problems = node_problems(workflow, CATALOG)
    assert problems[0] == "node 1 has type 'Missing', which this ComfyUI does not have"
    assert problems[1].startswith("node 3 (Sampler) inputs [('latent_image', 'LATENT'), ('seed', 'INT')")


def test_a_primitive_drives_several_widgets_and_must_agree_with_them():
    builder = WorkflowBuilder(CATALOG, "t")
    first = builder.add("Sampler", {"steps": 9}, column=0)
    odd = builder.add("Sampler", {"steps": 8}, column=0)
    with pytest.raises(ValueError, match="targets differ"):
        builder.primitive([(first, "steps"), (odd, "steps")], column=1, title="Steps")

    builder = WorkflowBuilder(CATALOG, "t")
    first = builder.add("Sampler", {"steps": 9}, column=0)
    second = builder.add("Sampler", {"steps": 9}, column=0)
    builder.primitive([(first, "steps"), (second, "steps")], column=1, title="Steps")
    workflow = builder.build()
    primitive = workflow["nodes"][2]  # id 3
    assert primitive["type"] == "PrimitiveNode" and primitive["widgets_values"] == [9, "fixed"]
    assert primitive["outputs"] == [{"name": "INT", "type": "INT", "slot_index": 0, "widget": {"name": "steps"},
                                     "links": [1, 2]}]
    assert workflow["links"] == [[1, 3, 0, 1, 3, "INT"], [2, 3, 0, 2, 3, "INT"]]
    assert structure_problems(workflow) == [] and node_problems(workflow, CATALOG) == []
    assert ui_to_api(workflow, CATALOG)["2"]["inputs"]["steps"] == 9
    workflow["nodes"][1]["widgets_values"][2] = 10
    assert node_problems(workflow, CATALOG) == ["primitive 3 holds 9 but node 2 widget steps holds 10"]


def test_the_generator_runs_as_a_script_and_needs_comfyui():
    """`python tools/workflows/make.py` finds its modules from any folder, and says what it lacks."""
    if WORKFLOWS_DIR.parent.parent.name == "custom_nodes":
        pytest.skip("the pack sits in a ComfyUI's custom_nodes/, so the script would find and boot that ComfyUI")
    script = WORKFLOWS_DIR.parent / "tools" / "workflows" / "make.py"
    env = {key: value for key, value in os.environ.items() if key != "COMFYUI_PATH"}
    result = subprocess.run([sys.executable, str(script), "--check"], cwd=script.anchor, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr == "make.py: no ComfyUI: set COMFYUI_PATH to a ComfyUI checkout to run the host tier\n"
