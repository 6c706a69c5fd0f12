"""One process of the two-process (gloo, CPU) training test: `torchrun --nproc_per_node 2 ddp_train_rank.py CONFIG`.

Trains through animekit.training.run.train like the CLI does, recording the image paths of every
batch this rank drew, then writes this rank's final LoRA weights and its batches next to the outputs.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support`

import torch

torch.set_num_threads(1)

from safetensors.torch import save_file  # noqa: E402

import animekit.training.loop as loop  # noqa: E402
from animekit.training.config_toml import load_config  # noqa: E402
from animekit.training.run import train  # noqa: E402

seen: list[list[str]] = []


class RecordingSource(loop.BatchSource):
    def _finish(self, prepared):
        seen.append(list(prepared.paths))
        return super()._finish(prepared)


def main(config: str) -> None:
    from accelerate import PartialState

    loop.BatchSource = RecordingSource
    cfg = load_config(config)
    result = train(cfg)
    state = PartialState()
    out = Path(cfg.save.output_dir)
    weights = {k: v.detach().contiguous() for k, v in result.network.state_dict().items()}
    save_file(weights, str(out / f"rank{state.process_index}.safetensors"))
    (out / f"rank{state.process_index}-batches.json").write_text(
        json.dumps({"world_size": state.num_processes, "batches": seen}), encoding="utf-8"
    )


if __name__ == "__main__":
    main(sys.argv[1])
