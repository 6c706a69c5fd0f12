"""checkpoints/: one architecture vocabulary, one key-prefix table, one detector (used by merge,
trainer and nodes), and header-only key reading."""

from __future__ import annotations

import json
import struct
import typing

import pytest

from animekit.checkpoints.architecture import ARCHITECTURE_NAMES, ARCHITECTURES, SD15, SDXL, architecture, canonical_name
from animekit.checkpoints.detect import (
    detect_architecture,
    detect_file_architecture,
    identify,
    identify_comfy_clip,
    read_key_shapes,
    require_same_architecture,
    require_same_clip,
)
from animekit.checkpoints.keys import TEXT_ENCODER_PREFIXES, comfy_name, is_text_encoder_key, unet_relative
from support.checkpoints import layout, write_checkpoint


def shapes(arch: str) -> dict[str, tuple[int, ...]]:
    return {key: shape for key, shape, _ in layout(arch)}


# --- one vocabulary -------------------------------------------------------------------------------

def test_the_names_are_sd15_and_sdxl_and_sd1_is_an_alias():
    assert ARCHITECTURE_NAMES == ("sd15", "sdxl")
    assert architecture("sd15") is SD15 and architecture("SDXL") is SDXL
    assert architecture("sd1") is SD15 and canonical_name("SD1.5") == "sd15"
    with pytest.raises(ValueError, match=r"^--arch must be one of sd15, sdxl, got 'sd2'$"):
        architecture("sd2", what="--arch")


def test_every_feature_uses_the_same_names():
    from animekit.prompting.profile import FAMILIES, load_profile, profile_ids
    from animekit.training.config import Arch
    from animekit.training.protocols import ARCHS

    assert typing.get_args(Arch) == ("auto", *ARCHITECTURE_NAMES)
    assert ARCHS == ARCHITECTURE_NAMES and FAMILIES == ARCHITECTURE_NAMES
    families = {load_profile(pid).family for pid in profile_ids()}
    assert families == set(ARCHITECTURE_NAMES)  # the shipped profiles cover both, in these words
    assert set(TEXT_ENCODER_PREFIXES) == set(ARCHITECTURES)


def test_layouts_have_the_supermerger_block_names_in_order():
    assert SD15.weight_count == 26 and SDXL.weight_count == 20
    assert SD15.blocks[:3] == ("BASE", "IN00", "IN01") and SD15.blocks[12:15] == ("IN11", "M00", "OUT00")
    assert SD15.blocks[-1] == "OUT11" and len(set(SD15.blocks)) == 26
    assert SDXL.blocks == ("BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9)))
    assert (SD15.modelspec, SD15.resolution) == ("stable-diffusion-v1", 512)
    assert (SDXL.modelspec, SDXL.resolution) == ("stable-diffusion-xl-v1-base", 1024)


# --- one prefix table -----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHITECTURE_NAMES)
def test_prefix_table_covers_every_key_of_the_real_layouts(arch):
    keys = list(shapes(arch))
    text = [k for k in keys if is_text_encoder_key(k)]
    by_part = {part: [k for k in keys if k.startswith(prefix)] for part, prefix in TEXT_ENCODER_PREFIXES[arch].items()}
    assert sorted(text) == sorted(k for part in by_part.values() for k in part)  # every text key is under one part
    assert all(by_part.values())
    other = {k.split(".", 1)[0] for k in keys if not is_text_encoder_key(k) and unet_relative(k) is None}
    assert other == {"first_stage_model"}


def test_comfy_names():
    assert comfy_name("model.diffusion_model.out.2.weight") == "diffusion_model.out.2.weight"
    assert comfy_name("cond_stage_model.transformer.text_model.final_layer_norm.weight") == "clip_l.transformer.text_model.final_layer_norm.weight"
    assert comfy_name("conditioner.embedders.0.transformer.x.weight") == "clip_l.transformer.x.weight"
    assert comfy_name("conditioner.embedders.1.model.ln_final.weight") == "clip_g.model.ln_final.weight"
    assert comfy_name("first_stage_model.decoder.conv_in.weight") == "first_stage_model.decoder.conv_in.weight"


# --- one detector ---------------------------------------------------------------------------------

def test_real_layouts_are_identified_from_shapes_or_names_alone():
    assert identify(shapes("sd15")).arch is SD15
    assert identify(shapes("sdxl")).arch is SDXL
    assert detect_architecture(list(shapes("sd15"))) is SD15  # key names only (no shapes)
    assert detect_architecture(iter(shapes("sdxl"))) is SDXL
    # ComfyUI MODEL keys (diffusion_model. prefix) work the same
    comfy = {"diffusion_model." + k[len("model.diffusion_model."):]: s for k, s in shapes("sdxl").items() if k.startswith("model.diffusion_model.")}
    assert identify(comfy).arch is SDXL


def test_sd2_refiner_and_non_checkpoints_are_named():
    sd2 = dict(shapes("sd15"))
    sd2["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = (320, 1024)
    assert identify(sd2).arch is None and identify(sd2).description == "an SD2.x model (not supported: only SD1.x and SDXL)"
    sd2_names = [k for k in shapes("sd15") if not k.startswith("cond_stage_model.")] + ["cond_stage_model.model.ln_final.weight"]
    assert identify(sd2_names).arch is None and "SD2" in identify(sd2_names).description
    refiner = {f"model.diffusion_model.input_blocks.{i}.0.weight": (4,) for i in range(12)}
    refiner.update({"model.diffusion_model.label_emb.0.0.weight": (4, 4), "model.diffusion_model.output_blocks.0.0.weight": (4,)})
    assert "refiner" in identify(refiner).description
    assert identify({"lora_unet_down_blocks_0.lora_up.weight": (4, 4)}).description == "a LoRA, not a checkpoint"
    assert identify({"encoder.down.0.block.0.conv1.weight": (4,)}).description == "a VAE only (no UNet keys)"
    assert identify({}).description == "empty (no tensors)"
    assert identify(["unet.down_blocks.0.x.weight"]).description.startswith("a diffusers-format model")


def test_detect_architecture_names_the_input():
    with pytest.raises(ValueError, match=r"^model\.checkpoint 'v.safetensors' is a VAE only \(no UNet keys\); expected an SD1\.x or SDXL checkpoint$"):
        detect_architecture(["first_stage_model.decoder.conv_in.weight"], name="model.checkpoint 'v.safetensors'")


def test_mixed_architectures_are_refused_naming_each_input():
    with pytest.raises(ValueError) as err:
        require_same_architecture({"model A (a.safetensors)": shapes("sd15"), "model B (b.safetensors)": shapes("sdxl")})
    assert str(err.value) == (
        "cannot block-merge these models (mixed architectures): model A (a.safetensors) is SD1.x; model B (b.safetensors) is SDXL"
    )
    with pytest.raises(ValueError, match=r"unsupported architecture.*model B is a LoRA"):
        require_same_architecture({"model A": shapes("sd15"), "model B": {"lora_te_x.lora_up.weight": (4,)}})


def test_comfy_clip_objects_are_identified():
    assert identify_comfy_clip(["clip_l.transformer.x.weight"]).arch is SD15
    assert identify_comfy_clip(["clip_l.a.weight", "clip_g.b.weight"]).arch is SDXL
    assert identify_comfy_clip(["clip_g.b.weight"]).description == "CLIP-G only (SDXL refiner)"
    assert identify_comfy_clip(["t5xxl.x.weight"]).description == "a text encoder with t5xxl (not SD1.x/SDXL CLIP)"
    with pytest.raises(ValueError, match=r"^cannot block-merge these text encoders \(mixed architectures\): clip A is SD1\.x CLIP \(L\); clip B is SDXL CLIP \(L\+G\)$"):
        require_same_clip({"clip A": ["clip_l.a.weight"], "clip B": ["clip_l.a.weight", "clip_g.b.weight"]})


# --- header-only reading --------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHITECTURE_NAMES)
def test_a_file_is_detected_from_its_header(tmp_path, arch):
    path = write_checkpoint(tmp_path / f"{arch}.safetensors", arch)
    found = read_key_shapes(path)
    assert list(found) == [k for k, _, _ in layout(arch)]  # file order, every key
    assert detect_file_architecture(path) is ARCHITECTURES[arch]


def test_header_reading_does_not_read_tensor_data(tmp_path):
    """Tensor bytes that are never valid weights (all 0xFF) still give the keys: only the header is read."""
    header = {"model.diffusion_model.input_blocks.0.0.weight": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}
    blob = json.dumps(header).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\xff" * 8)
    assert read_key_shapes(path) == {"model.diffusion_model.input_blocks.0.0.weight": (2, 2)}


def test_broken_files_are_named(tmp_path):
    path = write_checkpoint(tmp_path / "cut.safetensors", "sd15")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"^model\.checkpoint: '.*cut\.safetensors' is not a valid safetensors file: .*truncated"):
        read_key_shapes(path, label="model.checkpoint")
    with pytest.raises(FileNotFoundError, match=r"^missing\.safetensors: '.*missing\.safetensors' does not exist$"):
        detect_file_architecture(tmp_path / "missing.safetensors", label="missing.safetensors")
    vae = tmp_path / "vae.safetensors"
    blob = json.dumps({"first_stage_model.decoder.conv_in.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    vae.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 4)
    with pytest.raises(ValueError, match=r"^'.*vae\.safetensors' is a VAE only"):
        detect_file_architecture(vae)
