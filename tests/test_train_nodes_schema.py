"""The trainer nodes' inputs are public API (workflows bind to ids, names and order): pin them."""

from __future__ import annotations

import pytest

from support.train_nodes import DATASET_DEFAULTS, LORA_DEFAULTS, TRAIN_DEFAULTS

pytestmark = pytest.mark.host

DATASET_INPUTS = ["folder", *DATASET_DEFAULTS]
HEAD = ["model", "clip", "vae", "dataset", "filename", "steps", "batch_size", "gradient_accumulation", "unet_lr",
        "train_text_encoder", "text_encoder_lr"]  # fmt: skip
NETWORK = ["rank", "alpha", "conv_rank", "conv_alpha"]
TAIL = ["noise_offset", "min_snr_gamma", "optimizer", "lr_scheduler", "warmup_steps", "mixed_precision",
        "gradient_checkpointing", "cache_latents", "cache_text_encoder_outputs", "training_seed", "save_every_n_steps",
        "sample_every_n_steps", "sample_prompts", "sample_negative", "sample_steps", "sample_cfg", "resume",
        "continue_from"]  # fmt: skip


def schema(host, node_id):
    return host.node_class(node_id).define_schema()


@pytest.mark.parametrize(
    ("node_id", "names"),
    [("AnimeKitDataset", DATASET_INPUTS + ["min_aesthetic_score"]), ("AnimeKitTrainLora", HEAD + NETWORK + TAIL),
     ("AnimeKitTrainCheckpoint", HEAD + TAIL)],
)
def test_inputs_keep_their_names_order_and_tooltips(comfy_host, node_id, names):
    found = schema(comfy_host, node_id)
    assert [i.id for i in found.inputs] == names
    assert all(i.tooltip for i in found.inputs), [i.id for i in found.inputs if not i.tooltip]
    optional = [i.id for i in found.inputs if getattr(i, "optional", False)]
    assert optional == (["min_aesthetic_score"] if node_id == "AnimeKitDataset" else [])  # added last, optional
    assert found.category == "AnimeKit/training"


def test_defaults_are_the_documented_ones(comfy_host):
    dataset = {i.id: i.default for i in schema(comfy_host, "AnimeKitDataset").inputs}
    assert dataset == dict(DATASET_DEFAULTS, folder="", resolution=1024, min_aesthetic_score=0.0)  # the tests train at 256; users at 1024
    lora = {i.id: i.default for i in schema(comfy_host, "AnimeKitTrainLora").inputs if i.id not in HEAD[:4]}
    assert lora == dict(
        LORA_DEFAULTS, filename="animekit_lora", steps=1000, unet_lr=1e-4, text_encoder_lr=5e-5, rank=16, alpha=8.0,
        training_seed=42, sample_steps=20, sample_cfg=7.0,
    )  # fmt: skip
    full = {i.id: i.default for i in schema(comfy_host, "AnimeKitTrainCheckpoint").inputs if i.id not in HEAD[:4]}
    assert full == dict(
        TRAIN_DEFAULTS, filename="animekit_checkpoint", steps=1000, unet_lr=2e-6, text_encoder_lr=1e-6,
        optimizer="adafactor", training_seed=42, sample_steps=20, sample_cfg=7.0,
    )  # fmt: skip


def test_outputs(comfy_host):
    dataset = schema(comfy_host, "AnimeKitDataset").outputs
    assert [(o.id, o.io_type) for o in dataset] == [("dataset", "ANIMEKIT_DATASET"), ("preview", "STRING")]
    for node_id, name in (("AnimeKitTrainLora", "lora_name"), ("AnimeKitTrainCheckpoint", "checkpoint_name")):
        outputs = schema(comfy_host, node_id).outputs
        assert [o.io_type for o in outputs] == ["MODEL", "CLIP", "STRING", "IMAGE"]
        assert [o.display_name for o in outputs] == ["model", "clip", name, "loss_graph"]
        assert all(o.tooltip for o in outputs)


def test_choice_lists_are_the_trainer_configs_own(comfy_host):
    """One source: the combos list what training/config.py's types allow (plus `auto` precision)."""
    from animekit.training.options import LATENT_CACHES, LR_SCHEDULERS, MIXED_PRECISIONS, OPTIMIZERS

    for node_id in ("AnimeKitTrainLora", "AnimeKitTrainCheckpoint"):
        combos = {i.id: list(i.options) for i in schema(comfy_host, node_id).inputs if i.id != "continue_from" and hasattr(i, "options")}
        assert combos == {"optimizer": list(OPTIMIZERS), "lr_scheduler": list(LR_SCHEDULERS),
                          "mixed_precision": list(MIXED_PRECISIONS), "cache_latents": list(LATENT_CACHES)}  # fmt: skip


def test_reworded_errors_name_real_inputs(comfy_host):
    """Every config key an error may name is reworded to an input a user can find on a node."""
    from animekit.training.flat_settings import INPUT_NAMES

    inputs = {i.id for node_id in ("AnimeKitTrainLora", "AnimeKitDataset") for i in schema(comfy_host, node_id).inputs}
    assert set(INPUT_NAMES.values()) <= inputs, set(INPUT_NAMES.values()) - inputs
