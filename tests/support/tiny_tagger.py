"""A tiny WD14-shaped ONNX tagger with known outputs, built at test time with onnx's helper API.

Input `input_1`: [batch, SIZE, SIZE, 3] float (BGR, 0-255). Each output is a fixed linear function
of the image's mean channel values, so a test can predict the exact probabilities and catch a
wrong channel order, padding colour or size:
  blue_tag = mean(channel 0) / 255      (channel 0 is blue when the input is BGR)
  red_tag = mean(channel 2) / 255
  char = mean(channel 1) / 255          (a character row: green images are "the character")
  plus constant rows: 1girl 0.9, rating rows, an emoticon, a weak tag and one to exclude.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 8
# (name, category, weights on the (B, G, R) means / 255, bias)
ROWS = [
    ("general", 9, (0, 0, 0), 0.7),
    ("sensitive", 9, (0, 0, 0), 0.2),
    ("1girl", 0, (0, 0, 0), 0.9),
    ("blue_tag", 0, (1, 0, 0), 0.0),
    ("red_tag", 0, (0, 0, 1), 0.0),
    ("^_^", 0, (0, 0, 0), 0.5),
    ("weak_tag", 0, (0, 0, 0), 0.1),
    ("watermark", 0, (0, 0, 0), 0.95),
    ("ganyu_(genshin_impact)", 4, (0, 1, 0), 0.0),
]


def write_tagger(folder: Path, size: int = SIZE, rows=ROWS, csv_rows=None) -> Path:
    """model.onnx + selected_tags.csv in `folder` (`csv_rows` overrides the CSV, for mismatch tests)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.array([r[2] for r in rows], dtype=np.float32).T / 255.0  # [3, K]
    bias = np.array([r[3] for r in rows], dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["input_1"], ["means"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["means", "weights"], ["linear"]),
        helper.make_node("Add", ["linear", "bias"], ["predictions_sigmoid"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_wd_tagger",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", len(rows)])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    lines = ["tag_id,name,category,count"]
    for index, (name, category, _, _) in enumerate(csv_rows if csv_rows is not None else rows):
        lines.append(f"{1000 + index},{name},{category},{100 - index}")
    (folder / "selected_tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
