"""File-to-file block merge: stream two (or three) checkpoints key by key into one safetensors file.

Memory stays bounded by a few slices whatever the model size (TIES, which needs whole tensors for
its top-k, by a few copies of the largest tensor). The inputs are hashed for the metadata from
the merge's own reads, so each input is read once. The output appears only when complete (atomic rename);
on any error, a cancel or a full disk, nothing is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..checkpoints.detect import identify, require_same_architecture
from ..checkpoints.keys import VAE_PREFIX, is_text_encoder_key
from .explain import explain
from ..files.atomic import atomic_output
from ..files.output_checks import check_free_space, check_output_path
from ..files.hashing import cached_sha256, legacy_hash_from, remember_sha256
from .metadata import InputModel, checkpoint_metadata
from .methods import MergeMethod
from .plan import VAE_FILE, VAE_KEEP, VAE_MERGE, MergePlan, TensorSpec, build_plan
from .safetensors_stream import OutputTensor, SafetensorsWriter, itemsize
from .sinks import open_sink
from .sources import open_checkpoint
from .stream_merge import Job, StreamMerge, slices, source_of
from .weights import WeightChoice

OUTPUT_DTYPES = {"fp16": "F16", "bf16": "BF16", "fp32": "F32", "keep": None}
TOOL = "animekit"


@dataclass(frozen=True)
class FileMergeConfig:
    """One file merge. `vae` is 'keep', 'merge' (under BASE) or the path of a VAE file to bake in."""

    model_a: Path
    model_b: Path
    output: Path
    weights: WeightChoice
    model_c: Path | None = None
    method: MergeMethod = field(default_factory=MergeMethod)
    dtype: str = "fp16"
    vae: str = VAE_KEEP
    overwrite: bool = False
    title: str | None = None
    hash_cache: str | None = None  # where remembered input hashes live (None: $ANIMEKIT_HASH_CACHE or ~/.cache)
    overwrite_hint: str = "--overwrite"  # how the caller's user allows overwriting (CLI flag or node input)


@dataclass(frozen=True)
class FileMergeResult:
    path: Path
    plan: MergePlan
    report: str
    bytes_written: int
    metadata: dict


# --- checks -------------------------------------------------------------------------------------

def _check_request(config: FileMergeConfig, *, writing: bool) -> None:
    if config.dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(OUTPUT_DTYPES)}, got {config.dtype!r}")
    if config.method.needs_base and config.model_c is None:
        raise ValueError(f"the {config.method.name} method needs a base model C (--base)")
    if not writing:
        return
    check_output_path(config.output, input_files(config), overwrite=config.overwrite, suffix=".safetensors",
                      overwrite_hint=config.overwrite_hint)


def input_files(config: FileMergeConfig) -> dict[str, str | os.PathLike | None]:
    """Every file this merge reads, by label: none of them may be the output."""
    vae = None if str(config.vae) in (VAE_KEEP, VAE_MERGE) else config.vae
    return {"model A": config.model_a, "model B": config.model_b, "model C": config.model_c, "the VAE file": vae,
            "the preset file": config.weights.preset_file, "the hash cache": config.hash_cache}


def _specs(source) -> dict[str, TensorSpec]:
    return {k: TensorSpec(t.shape, t.is_float) for k, t in source.tensors.items()}


def _vae_keys(vae, a) -> dict[str, str]:
    """Output key -> key in the VAE file; refuses files that are not an LDM-format VAE."""
    found = identify(vae.shapes())
    if found.arch is not None or any(is_text_encoder_key(k) for k in vae.tensors):
        what = f"a full {found.arch.label} checkpoint" if found.arch is not None else found.description
        raise ValueError(f"VAE file {vae.label} is {what}, not a VAE; give a VAE file (keys encoder.* and decoder.*, "
                         f"or first_stage_model.*)")
    if found.description.startswith("a LoRA"):
        raise ValueError(f"VAE file {vae.label} is a LoRA, not a VAE")
    mapping = {}
    for key in vae.tensors:
        out = key if key.startswith(VAE_PREFIX) else VAE_PREFIX + key
        mapping[out] = key
    inner = [k[len(VAE_PREFIX):] for k in mapping]
    if any(".down_blocks." in k or ".up_blocks." in k for k in inner):
        raise ValueError(f"VAE file {vae.label}: diffusers-format VAE; give an original (LDM) format VAE file")
    if not any(k.startswith(("encoder.", "decoder.")) for k in inner):
        raise ValueError(f"VAE file {vae.label}: no encoder./decoder. keys, this is not a VAE")
    for out, key in mapping.items():
        if out in a.tensors and a.tensors[out].shape != vae.tensors[key].shape:
            raise ValueError(
                f"VAE file {vae.label}: shape mismatch for {key!r}: {list(vae.tensors[key].shape)} "
                f"vs model A {list(a.tensors[out].shape)}"
            )
    return mapping


# --- the merge ----------------------------------------------------------------------------------

class _Merge:
    """One merge, opened and planned: inputs checked, architecture agreed, every key decided."""

    def __init__(self, config: FileMergeConfig, stack: contextlib.ExitStack, *, writing: bool = True):
        self.config = config
        _check_request(config, writing=writing)
        self.a = stack.enter_context(contextlib.closing(open_checkpoint(config.model_a, label="model A")))
        self.b = stack.enter_context(contextlib.closing(open_checkpoint(config.model_b, label="model B")))
        self.c = None
        if config.method.needs_base:
            self.c = stack.enter_context(contextlib.closing(open_checkpoint(config.model_c, label="model C")))
        named = {f"model A ({self.a.path.name})": self.a.shapes(), f"model B ({self.b.path.name})": self.b.shapes()}
        if self.c is not None:
            named[f"model C ({self.c.path.name})"] = self.c.shapes()
        self.arch = require_same_architecture(named)
        weights = config.weights.resolve(self.arch)
        vae_mode, vae_source = self._vae_choice()
        self.vae = None
        self.vae_map: dict[str, str] = {}
        if vae_mode == VAE_FILE:
            self.vae = stack.enter_context(contextlib.closing(open_checkpoint(config.vae, label="VAE file")))
            self.vae_map = _vae_keys(self.vae, self.a)
        self.plan = build_plan(
            self.arch, weights, config.method, _specs(self.a), _specs(self.b),
            _specs(self.c) if self.c is not None else None, vae_mode=vae_mode, vae_source=vae_source,
        )
        self.job = self._job()

    def _vae_choice(self) -> tuple[str, str | None]:
        vae = str(self.config.vae)
        if vae in (VAE_KEEP, VAE_MERGE):
            return vae, None
        return VAE_FILE, Path(vae).name

    def _out_dtype(self, source_code: str, is_float: bool) -> str:
        target = OUTPUT_DTYPES[self.config.dtype]
        return target if (is_float and target is not None) else source_code

    def _job(self) -> Job:
        outputs, sources = [], []
        for item in self.plan.keys:
            info = self.a.tensors[item.key]
            outputs.append(OutputTensor(item.key, self._out_dtype(info.dtype, info.is_float), info.shape))
            sources.append((source_of(item.merged, item.weight, self.config.method), item.key, item.weight or 0.0, item.seed_name))
        for out_key, key in self.vae_map.items():
            info = self.vae.tensors[key]
            outputs.append(OutputTensor(out_key, self._out_dtype(info.dtype, info.is_float), info.shape))
            sources.append(("vae", key, 0.0, out_key))
        # Widest dtypes first keeps every tensor aligned; the sort is stable, so A's order stays.
        order = sorted(range(len(outputs)), key=lambda i: -itemsize(outputs[i].dtype))
        return Job([outputs[i] for i in order], [sources[i] for i in order])


def plan_checkpoint_merge(config: FileMergeConfig) -> MergePlan:
    """Check the inputs and plan the merge from the headers alone (nothing is written)."""
    with contextlib.ExitStack() as stack:
        return _Merge(config, stack, writing=False).plan


def _sources(merge: _Merge) -> list[tuple[str, object]]:
    return [(role, src) for role, src in (("model_a", merge.a), ("model_b", merge.b), ("model_c", merge.c)) if src is not None]


def _input_models(merge: _Merge, known: dict[str, str | None] | None) -> list[InputModel]:
    """The inputs for the metadata: with their sha256 (remembered ones from `known`, others just
    computed), or with same-length placeholders while `known` is None."""
    models = []
    for index, (role, src) in enumerate(_sources(merge)):
        if known is None:  # distinct, so sd_merge_models keeps one entry per input as in the final
            models.append(InputModel(role, src.path.stem, str(index) * 64, "0" * 8, src.metadata))
            continue
        digest = known[role]
        if digest is None:
            digest = src.sha256()
            remember_sha256(src.path, digest, merge.config.hash_cache)
        models.append(InputModel(role, src.path.stem, digest, legacy_hash_from(src.read_at), src.metadata))
    return models


def _cosine_first_pass(merge: _Merge, check_cancel: Callable[[], None] | None):
    """The cosine methods' similarity range: every merged key of A and B read once, whole."""
    from .cosine import cosine_range, first_pass_values
    from .methods import COSINE_A

    def values():
        for item in merge.plan.merged:
            if check_cancel is not None:
                check_cancel()
            shape = merge.a.tensors[item.key].shape
            a, b = merge.a.read(item.key).view(shape), merge.b.read(item.key).view(shape)
            yield first_pass_values(a, b, favour_a=merge.config.method.name == COSINE_A)

    return cosine_range(values())


def merge_checkpoints(
    config: FileMergeConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> FileMergeResult:
    """Run the merge; `progress(done_bytes, total_bytes)` after each slice, `check_cancel()` may raise."""
    output = Path(config.output)
    with contextlib.ExitStack() as stack:
        merge = _Merge(config, stack)
        title = config.title or output.stem
        meta_args = dict(title=title, dtype=config.dtype, tool=TOOL, model_a_metadata=merge.a.metadata)
        draft = checkpoint_metadata(merge.plan, _input_models(merge, None), **meta_args)
        check_free_space(output, sum(o.nbytes for o in merge.job.outputs) + len(str(draft)) + (1 << 20))
        cosine = _cosine_first_pass(merge, check_cancel) if config.method.spec.needs_cosine_range else None
        known = {role: cached_sha256(src.path, config.hash_cache) for role, src in _sources(merge)}
        for role, src in _sources(merge):
            if known[role] is None:
                src.start_hashing()
            src.warm_up()  # the disk reads ahead while StreamMerge imports torch
        engine = StreamMerge({"a": merge.a, "b": merge.b, "c": merge.c, "vae": merge.vae}, config.method, cosine=cosine)
        with atomic_output(output) as tmp:
            sink, fds = open_sink(tmp)
            try:
                writer = SafetensorsWriter(sink, merge.job.outputs, draft, reserve=1024)
                engine.run(slices(merge.job, config.method), writer, progress=progress, check_cancel=check_cancel)
                metadata = checkpoint_metadata(merge.plan, _input_models(merge, known), **meta_args)
                writer.finish(metadata)
                size = writer.total_size
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OSError(errno.ENOSPC, f"disk full while writing {str(output)!r}; nothing was saved") from None
                raise
            finally:
                for fd in fds:
                    os.close(fd)
        return FileMergeResult(output, merge.plan, explain(merge.plan), size, metadata)
