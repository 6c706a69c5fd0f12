"""The streaming engine: cut a merge plan into slices and run read -> merge -> write as a pipeline.

Why it looks like this (measured on 2 cores): the arithmetic is cheap, but freshly allocated
buffers cost a page fault per 4 KiB and OpenMP threads fight the I/O threads. So every slice is
read into one of two reused buffer sets, merged in reused fp32 scratch on one torch thread, and
written from a reused output buffer, while a helper thread reads the next slice.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .methods import WEIGHTED_SUM, MergeMethod, key_seed, merge_values
from .safetensors_stream import DTYPES, OutputTensor, SafetensorsWriter, itemsize

SLICE_ELEMENTS = 1 << 20  # 1 Mi elements: a 4 MiB fp32 scratch stays in cache


@dataclass(frozen=True)
class Slice:
    """Elements start..start+count-1 of one output tensor and where they come from."""

    out: OutputTensor
    source: str  # "a" | "b" | "merge" | "vae"
    key: str  # the key in the source file(s)
    start: int
    count: int
    weight: float = 0.0
    stream: int = 0  # DARE seed stream of this key


@dataclass(frozen=True)
class Job:
    """Output tensors in file order, each with its source (a/b/merge/vae), key, weight, seed name."""

    outputs: list[OutputTensor]
    sources: list[tuple[str, str, float, str]]


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def slices(job: Job, method: MergeMethod, slice_elements: int | None = None) -> list[Slice]:
    """TIES needs whole tensors (its top-k); everything else is cut into fixed-size slices."""
    slice_elements = slice_elements or SLICE_ELEMENTS
    result = []
    for out, (source, key, weight, seed_name) in zip(job.outputs, job.sources):
        numel = _numel(out.shape)
        stream = key_seed(method.seed, seed_name) if source == "merge" else 0
        span = max(1, numel) if (source == "merge" and not method.elementwise) else slice_elements
        for start in range(0, max(1, numel), span):
            result.append(Slice(out, source, key, start, min(span, numel - start), weight, stream))
    return result


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Arithmetic on one intra-op thread; the other cores read, hash and write."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class StreamMerge:
    """Run `slices` from sources {'a','b','c','vae'} into `writer`."""

    def __init__(self, sources: dict, method: MergeMethod, slice_elements: int | None = None):
        self.sources = {name: src for name, src in sources.items() if src is not None}
        self.method = method
        self.slice_elements = slice_elements = slice_elements or SLICE_ELEMENTS
        widest_in = max((itemsize(t.dtype) for s in self.sources.values() for t in s.tensors.values()), default=4)
        self._read_sets = [
            {name: torch.empty(slice_elements * widest_in, dtype=torch.uint8) for name in ("a", "b", "c")}
            for _ in range(2)
        ]
        self._scratch = (torch.empty(slice_elements), torch.empty(slice_elements))
        self._out = torch.empty(slice_elements * 8, dtype=torch.uint8)

    def _read(self, piece: Slice, buffers: dict | None):
        def get(name: str, source_name: str | None = None):
            buf = buffers[name] if buffers is not None else None
            return self.sources[source_name or name].read_into(piece.key, piece.start, piece.count, buf)

        if piece.source == "merge":
            c = get("c") if "c" in self.sources and self.method.needs_base else None
            return get("a"), get("b"), c
        return (get("a", piece.source),)

    def _compute(self, piece: Slice, tensors) -> torch.Tensor:
        out_dtype = DTYPES[piece.out.dtype]
        pooled = piece.count <= self.slice_elements
        if piece.source == "merge":
            a, b, c = tensors
            scratch = self._scratch if pooled else None
            values = merge_values(self.method, piece.weight, a, b, c, stream=piece.stream, start=piece.start, scratch=scratch)
        else:
            values = tensors[0]
            if values.dtype == out_dtype:
                return values
        if not pooled:
            return values.to(out_dtype)
        out = self._out[: piece.count * itemsize(piece.out.dtype)].view(out_dtype)
        return out.copy_(values)

    def _pipeline(self, pieces: list[Slice]) -> Iterator[tuple[Slice, tuple]]:
        """Yield (slice, tensors) while the next slice is being read on a helper thread."""
        if not pieces:
            return

        def buffers(index: int):
            return self._read_sets[index % 2] if pieces[index].count <= self.slice_elements else None

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="animekit-read") as pool:
            pending = pool.submit(self._read, pieces[0], buffers(0))
            for index, piece in enumerate(pieces):
                tensors = pending.result()
                if index + 1 < len(pieces):
                    pending = pool.submit(self._read, pieces[index + 1], buffers(index + 1))
                yield piece, tensors

    def run(
        self,
        pieces: list[Slice],
        writer: SafetensorsWriter,
        *,
        progress: Callable[[int, int], None] | None = None,
        check_cancel: Callable[[], None] | None = None,
    ) -> None:
        total = sum(p.count * itemsize(p.out.dtype) for p in pieces)
        done = 0
        with single_torch_thread():
            for piece, tensors in self._pipeline(pieces):
                if check_cancel is not None:
                    check_cancel()
                writer.write(piece.out.key, self._compute(piece, tensors))
                done += piece.count * itemsize(piece.out.dtype)
                if progress is not None:
                    progress(done, total)


def source_of(merged: bool, weight: float | None, method: MergeMethod) -> str:
    """Where a key's values come from: A as is (kept or w = 0), B as is (weighted sum at w = 1), or merged."""
    if not merged or weight == 0.0:
        return "a"
    if method.name == WEIGHTED_SUM and weight == 1.0:
        return "b"
    return "merge"
