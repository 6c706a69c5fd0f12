"""Open a checkpoint input by its extension: safetensors streamed, `.ckpt`/`.pt` through the safe loader.

Pickled checkpoints are only ever loaded with ``torch.load(weights_only=True)`` (no arbitrary code),
memory-mapped where the file format allows it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..files.hashing import BackgroundSha256
from .safetensors_stream import SafetensorsFile, TensorInfo, code_of

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class TorchCheckpointFile:
    """A `.ckpt` state dict behind the same read interface as SafetensorsFile."""

    def __init__(self, path: str | os.PathLike, *, label: str | None = None):
        self.path = Path(path)
        self.label = label or self.path.name
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.label}: {str(self.path)!r} does not exist")
        self.metadata: dict[str, str] = {}
        self._hasher: BackgroundSha256 | None = None
        self._tensors = self._load()
        self.tensors = {
            key: TensorInfo(key, self._code(key, t), tuple(t.shape), 0, t.numel() * t.element_size())
            for key, t in self._tensors.items()
        }

    def _load(self) -> dict:
        import torch

        try:
            try:
                obj = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                obj = torch.load(self.path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
        except Exception as exc:  # unpickling refused or corrupt archive
            raise ValueError(
                f"{self.label}: {str(self.path)!r} cannot be loaded safely as a checkpoint "
                f"(torch.load with weights_only=True): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ValueError(f"{self.label}: {str(self.path)!r} holds a {type(obj).__name__}, not a state dict")
        return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}

    def _code(self, key: str, tensor) -> str:
        code = code_of(tensor.dtype)
        if code is None:
            raise ValueError(f"{self.label}: {key!r} has unsupported dtype {tensor.dtype}")
        return code

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: t.shape for k, t in self.tensors.items()}

    def read_into(self, key: str, first: int, count: int, buffer=None, hold=None):
        flat = self._tensors[key].reshape(-1)[first:first + count]
        if buffer is None:
            return flat.clone()
        out = buffer[: count * flat.element_size()].view(flat.dtype)
        return out.copy_(flat)

    def read(self, key: str, first: int = 0, count: int | None = None):
        numel = self.tensors[key].numel
        return self.read_into(key, first, numel - first if count is None else count)

    def read_at(self, offset: int, nbytes: int) -> bytes:
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            return handle.read(nbytes)

    def start_hashing(self) -> None:
        self._hasher = BackgroundSha256(self.path)

    def warm_up(self) -> None:
        """Nothing to do: torch.load has already mapped the file."""

    def sha256(self) -> str:
        if self._hasher is None:
            self.start_hashing()
        return self._hasher.hexdigest()

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        if self._hasher is not None:
            self._hasher.cancel()
        self._tensors = {}


def open_checkpoint(path: str | os.PathLike, *, label: str):
    """SafetensorsFile or TorchCheckpointFile by suffix; anything else is refused."""
    suffix = Path(path).suffix.lower()
    if suffix == ".safetensors":
        return SafetensorsFile(path, label=label)
    if suffix in PICKLE_SUFFIXES:
        return TorchCheckpointFile(path, label=label)
    raise ValueError(f"{label}: {str(path)!r} is neither .safetensors nor .ckpt/.pt; cannot read it")
