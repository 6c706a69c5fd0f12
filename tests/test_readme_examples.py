"""The README's command-line examples run, so they cannot drift (issue 15).

Every `animekit` command in a ```bash block of README.md is run, in README order, in one scratch folder
holding tiny stand-ins for the files the examples name (A.safetensors, my-lora.toml, tags.txt, ...):
a line `animekit ...`, a segment `... && .venv/bin/animekit ...`, with `< FILE` as standard input.
Conventions a README line can use:
- a whole-line comment right after a command is a line of that command's output, and must be printed;
- a command that cannot run here goes in SKIP with the reason (GPUs, accelerate, hours of training).
A new example that names a file nobody built fails here: add its stand-in to `stand_ins` (or a reason
to SKIP), so the example is known to work as written.
"""

from __future__ import annotations

import io
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from animekit.__main__ import main
from animekit.merge.presets import builtin_presets
from animekit.training.checkpointing import state_folder_name
from support.checkpoints import write_checkpoint
from support.tiny_sd import make_dataset, make_model_folder

torch.set_num_threads(1)
README = Path(__file__).resolve().parents[1] / "README.md"

SKIP = {  # the command as written in the README -> why it is not run here
    "accelerate launch --num_processes 2 -m animekit train my-lora.toml":
        "needs accelerate's launcher and two processes; tests/test_training_ddp.py runs a two-process DDP training",
    "animekit train my-lora.toml --resume out/state-00000400":
        "needs a state saved at step 400 (hundreds of steps); `--resume out` runs on the newest state instead, and "
        "test_resume_example_names_a_real_state_folder checks the folder name's form",
}
STEP_400 = "state-00000400"

# Facts the README states beside a command: (command prefix, check of its stdout, what is claimed)
STATED = [
    ("animekit buckets --resolution 1024 --min 512 --max 2048 --step 64",
     lambda out: len(out.splitlines()) == 33 and all(re.fullmatch(r"\d+x\d+", line) for line in out.splitlines()),
     "33 kohya buckets, one WxH per line"),
    ("animekit merge-presets", lambda out: len(out.splitlines()) == 1 + len(builtin_presets().presets), "a header, then one preset per line"),
]  # fmt: skip

TINY_TRAINING = """# a stand-in for the README's my-lora.toml: a tiny SD1.5 model and 2 images, 2 steps
seed = 1
[model]
path = "model"
[network]
rank = 2
alpha = 2
[schedule]
max_steps = 2
[save]
output_dir = "out"
name = "my-lora"
every_n_steps = 2
[logging]
tensorboard = false
[dataset]
batch_size = 1
[dataset.buckets]
resolution = 64
min_size = 64
max_size = 128
[[dataset.folders]]
path = "data"
"""


def stand_ins(folder: Path) -> None:
    """The files the README's examples name, tiny and real (checkpoints with every key of SD1.5)."""
    for name, seed in (("A", 1), ("B", 2), ("C", 3)):
        write_checkpoint(folder / f"{name}.safetensors", "sd15", seed=seed)
    (folder / "tags.txt").write_text("smile, genshin_impact, upper_body, ganyu_(genshin_impact), 1girl\n", encoding="utf-8")
    make_model_folder(folder / "model", "sd15")
    make_dataset(folder / "data", 2)
    (folder / "my-lora.toml").write_text(TINY_TRAINING, encoding="utf-8")


@dataclass
class Example:
    line: int  # README line number
    text: str  # the command as written (comment stripped)
    argv: list[str] | None  # None: not an `animekit` program (e.g. accelerate launch ... -m animekit)
    stdin: str | None = None
    expected: list[str] = field(default_factory=list)  # output lines stated in comments right below


def _bash_blocks(text: str):
    """(line number, line) of every line inside a ```bash block."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if inside:
            yield number, line


def _is_animekit(tokens: list[str]) -> bool:
    return bool(tokens) and (tokens[0] == "animekit" or tokens[0].endswith("/animekit"))


def readme_examples(text: str) -> list[Example]:
    examples: list[Example] = []
    previous: Example | None = None
    for number, line in _bash_blocks(text):
        stripped = line.strip()
        if stripped.startswith("#"):
            if previous is not None:
                previous.expected.append(stripped[1:].strip())
            continue
        previous = None
        if not stripped:
            continue
        tokens = shlex.split(stripped, comments=True)
        segments, current = [], []
        for token in tokens:
            if token in ("&&", "||", ";", "|"):
                segments.append(current)
                current = []
            else:
                current.append(token)
        segments.append(current)
        for segment in segments:
            if _is_animekit(segment):
                argv, stdin = segment[1:], None
                if "<" in argv:
                    at = argv.index("<")
                    stdin, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
                previous = Example(number, shlex.join(segment), argv, stdin)
                examples.append(previous)
            elif "animekit" in segment and "-m" in segment:  # python -m animekit, accelerate launch -m animekit
                previous = Example(number, shlex.join(segment), None)
                examples.append(previous)
    return examples


EXAMPLES = readme_examples(README.read_text(encoding="utf-8"))


def test_the_readme_has_command_examples_and_every_skip_is_still_there():
    texts = [e.text for e in EXAMPLES]
    assert sum(e.argv is not None for e in EXAMPLES) >= 10, texts
    missing = [command for command in SKIP if command not in texts]
    assert not missing, f"SKIP names commands the README no longer has (remove them): {missing}"


def run_example(example: Example, capsys, monkeypatch) -> tuple[int, str, str]:
    if example.stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(Path(example.stdin).read_text(encoding="utf-8")))
    try:
        code = main(list(example.argv))
    except SystemExit as exc:  # argparse refusing the command line
        code = exc.code
    finally:
        monkeypatch.setattr(sys, "stdin", sys.__stdin__)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "sha256.json"))
    stand_ins(tmp_path)
    failures, ran = [], 0
    for example in EXAMPLES:
        if example.text in SKIP:
            continue
        if example.argv is None:
            failures.append(f"README line {example.line}: {example.text!r} is not run by this test: make it an "
                            "`animekit ...` line or add it to SKIP with the reason")  # fmt: skip
            continue
        code, out, err = run_example(example, capsys, monkeypatch)
        ran += 1
        if code != 0:
            failures.append(f"README line {example.line}: {example.text!r} exited {code}: {err.strip()[-800:]}")
            continue
        for wanted in example.expected:
            if wanted not in out.splitlines():
                failures.append(f"README line {example.line}: {example.text!r} did not print the stated line {wanted!r}")
        for prefix, check, claim in STATED:
            if example.text.startswith(prefix) and not check(out):
                failures.append(f"README line {example.line}: {example.text!r}: the README says {claim!r}; it printed {out[:300]!r}")
    assert not failures, "\n".join(failures)
    assert ran == len(EXAMPLES) - len(SKIP)
    # what the examples made is really there
    assert (tmp_path / "merged.safetensors").is_file() and (tmp_path / "merged-0.3.safetensors").is_file()
    assert (tmp_path / "out" / state_folder_name(2) / "state.json").is_file()


def test_resume_example_names_a_real_state_folder():
    assert state_folder_name(400) == STEP_400
    assert f"--resume out/{STEP_400}" in README.read_text(encoding="utf-8")


def test_readme_states_the_real_number_of_supermerger_presets():
    names = list(builtin_presets().presets)
    supermerger = len([n for n in names if n not in ("HIGHRES_REPLACE", "LOWRES_REPLACE")])
    assert supermerger == 38
    assert f"SuperMerger's {supermerger} names" in README.read_text(encoding="utf-8")


def test_readme_documents_the_hash_cache_where_what_and_how_to_clear():
    text = " ".join(README.read_text(encoding="utf-8").split())
    for fact in ("~/.cache/animekit/sha256.json", "`ANIMEKIT_HASH_CACHE=off`", "delete the file", "modification time"):
        assert fact in text, fact


@pytest.mark.parametrize(
    ("line", "argv", "stdin", "text"),
    [
        ('animekit prompt "1girl, smile"  # note', ["prompt", "1girl, smile"], None, 'animekit prompt \'1girl, smile\''),
        ("python3 -m venv .venv && .venv/bin/animekit buckets --profile x", ["buckets", "--profile", "x"], None, None),
        ("animekit prompt - < tags.txt", ["prompt", "-"], "tags.txt", None),
    ],
)
def test_command_extraction(line, argv, stdin, text):
    (example,) = readme_examples(f"```bash\n{line}\n# shown\n```\n")
    assert (example.argv, example.stdin, example.expected) == (argv, stdin, ["shown"])
    if text is not None:
        assert example.text == text
