"""The pack loads through ComfyUI's own loader, its nodes describe themselves, and graphs run in the real executor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from support.executor import (
    TINY_MODELS_NODE,
    configure_folders,
    execute_prompt,
    run_prompt,
    tiny_txt2img_prompt,
    validate,
)

pytestmark = pytest.mark.host


def _pack_node_classes(comfy_host):
    return sys.modules[f"{comfy_host.pack_module}.nodes"].all_nodes()


def test_pack_loads_and_registers_exactly_its_nodes(comfy_host):
    import nodes

    assert comfy_host.pack_module in sys.modules
    ids = [cls.GET_SCHEMA().node_id for cls in _pack_node_classes(comfy_host)]
    assert len(ids) == len(set(ids)), f"duplicate node ids: {ids}"
    assert sorted(ids) == comfy_host.node_ids  # none clashes with a ComfyUI node id
    for node_id, cls in zip(ids, _pack_node_classes(comfy_host)):
        assert nodes.NODE_CLASS_MAPPINGS[node_id] is cls


def test_every_node_id_starts_with_animekit(comfy_host):
    bad = [node_id for node_id in comfy_host.node_ids if not node_id.startswith("AnimeKit")]
    assert not bad, f"node ids must start with 'AnimeKit': {bad}"


def test_every_node_schema_builds_and_documents_its_inputs(comfy_host):
    for cls in _pack_node_classes(comfy_host):
        schema = cls.GET_SCHEMA()
        info = cls.GET_NODE_INFO_V1()  # what /object_info serves to the frontend
        json.dumps(info)
        assert info["name"] == schema.node_id and info["display_name"], schema.node_id
        inputs = cls.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional", "hidden"}, schema.node_id
        for section in ("required", "optional"):
            for name, spec in inputs.get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{schema.node_id}.{name} has no tooltip"


def test_comfyui_folders_point_into_the_session_sandbox(comfy_host):
    import folder_paths

    assert comfy_host.sandbox is not None and comfy_host.sandbox != comfy_host.root
    for path in (
        folder_paths.get_output_directory(),
        folder_paths.get_temp_directory(),
        folder_paths.get_input_directory(),
        folder_paths.get_user_directory(),
        *folder_paths.get_folder_paths("checkpoints"),
        *folder_paths.get_folder_paths("loras"),
    ):
        assert Path(path).is_relative_to(comfy_host.sandbox), path


def test_configure_folders_redirects_and_restores(comfy_host, tmp_path):
    import folder_paths

    before = (folder_paths.get_output_directory(), folder_paths.get_folder_paths("checkpoints"))
    with configure_folders(tmp_path) as folders:
        (folders.checkpoints / "a.safetensors").write_bytes(b"")
        (folders.loras / "l.safetensors").write_bytes(b"")
        assert folder_paths.get_filename_list("checkpoints") == ["a.safetensors"]
        assert folder_paths.get_filename_list("loras") == ["l.safetensors"]
        assert folder_paths.get_output_directory() == str(folders.output)
        assert folder_paths.get_temp_directory() == str(folders.temp)
        assert folder_paths.get_input_directory() == str(folders.input)
    assert (folder_paths.get_output_directory(), folder_paths.get_folder_paths("checkpoints")) == before
    assert "a.safetensors" not in folder_paths.get_filename_list("checkpoints")


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_tiny_txt2img_graph_runs_in_the_real_executor(comfy_host, comfy_folders, arch):
    result = run_prompt(comfy_host, tiny_txt2img_prompt(arch, steps=2))

    image = result.output("decode")
    assert image.shape == (1, 64, 64, 3) and image.dtype == torch.float32
    assert not image.isnan().any() and 0.0 <= image.min() and image.max() <= 1.0
    latent = result.output("sampler")["samples"]
    assert latent.shape == (1, 4, 8, 8)

    (saved,) = result.ui["preview"]["images"]
    assert saved["type"] == "temp" and (comfy_folders.temp / saved["subfolder"] / saved["filename"]).is_file()
    steps = [p for p in result.progress if p["node"] == "sampler"]
    assert [p["value"] for p in steps] == [1, 2] and {p["max"] for p in steps} == {2}
    events = [event for event, _ in result.messages]
    assert events[0] == "execution_start" and "execution_success" in events


def test_same_seed_same_image_other_prompt_other_image(comfy_host, comfy_folders):
    a = run_prompt(comfy_host, tiny_txt2img_prompt("sd15", positive="1girl", seed=3)).output("sampler")["samples"]
    b = run_prompt(comfy_host, tiny_txt2img_prompt("sd15", positive="1girl", seed=3)).output("sampler")["samples"]
    c = run_prompt(comfy_host, tiny_txt2img_prompt("sd15", positive="1boy, outdoors", seed=3)).output("sampler")["samples"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_validate_reports_node_errors(comfy_host):
    prompt = tiny_txt2img_prompt("sd15")
    assert validate(comfy_host, prompt) == (True, None, {})

    del prompt["sampler"]["inputs"]["steps"]
    ok, error, node_errors = validate(comfy_host, prompt)
    assert not ok and error["type"] == "prompt_outputs_failed_validation"
    assert node_errors["sampler"]["errors"][0]["type"] == "required_input_missing"
    assert node_errors["sampler"]["errors"][0]["extra_info"]["input_name"] == "steps"
    with pytest.raises(AssertionError, match="failed validation"):
        run_prompt(comfy_host, prompt)


def test_a_failing_node_is_reported_with_comfyui_details(comfy_host, comfy_folders):
    prompt = tiny_txt2img_prompt("sdxl")
    prompt["sd15"] = {"class_type": TINY_MODELS_NODE, "inputs": {"arch": "sd15", "seed": 0}}
    prompt["positive"]["inputs"]["clip"] = ["sd15", 1]  # 32-dim SD1 context into a 64-dim SDXL UNet

    result = execute_prompt(comfy_host, prompt)
    assert not result.success
    assert result.error["node_id"] == "sampler" and result.error["node_type"] == "KSampler"
    with pytest.raises(AssertionError, match=r"node sampler \(KSampler\) failed: RuntimeError"):
        run_prompt(comfy_host, prompt)


class _ProbeNode:
    """Reports through PromptServer.instance and a ProgressBar, and can be cancelled mid-way."""

    CATEGORY = "AnimeKit/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cancel_after": ("INT", {"default": 0, "min": 0, "max": 3})}}

    def run(self, cancel_after):
        import comfy.utils
        import nodes
        from server import PromptServer

        PromptServer.instance.send_sync("animekit.probe", {"hello": 1}, PromptServer.instance.client_id)
        bar = comfy.utils.ProgressBar(3)
        for step in range(3):
            if cancel_after and step == cancel_after:
                nodes.interrupt_processing()
            bar.update(1)
        return {"ui": {"text": ["done"]}}


@pytest.fixture
def probe_node(comfy_host, monkeypatch):
    import nodes

    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, "AnimeKitTest_Probe", _ProbeNode)
    return {"probe": {"class_type": "AnimeKitTest_Probe", "inputs": {"cancel_after": 0}}}


def test_messages_and_progress_reach_the_stub_server(comfy_host, probe_node):
    result = run_prompt(comfy_host, probe_node)
    assert ("animekit.probe", {"hello": 1}) in result.messages
    assert [(p["node"], p["value"], p["max"]) for p in result.progress] == [("probe", 1, 3), ("probe", 2, 3), ("probe", 3, 3)]
    assert result.ui == {"probe": {"text": ["done"]}}


def test_an_interrupt_stops_the_node_at_its_next_progress_update(comfy_host, probe_node):
    probe_node["probe"]["inputs"]["cancel_after"] = 2
    result = execute_prompt(comfy_host, probe_node)
    assert not result.success and result.error["node_id"] == "probe"
    assert [event for event, _ in result.messages][-1] == "execution_interrupted"
    assert [p["value"] for p in result.progress] == [1, 2]
    assert run_prompt(comfy_host, {"probe": {**probe_node["probe"], "inputs": {"cancel_after": 0}}}).success
