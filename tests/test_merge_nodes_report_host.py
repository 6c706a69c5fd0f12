"""The merge nodes' report is the CLI's short answer, and their weights text takes one value for every
block (issue 15). Real ComfyUI, tiny models."""

from __future__ import annotations

import pytest

from support.comfy_models import tiny_models

pytestmark = pytest.mark.host


def test_one_weight_merges_every_block_and_the_report_is_a_block_table(comfy_host):
    a, b = tiny_models("sd15", 1), tiny_models("sd15", 2)
    node = comfy_host.node_class("AnimeKitBlockMergeModel")
    merged, report = node.execute(a.model, b.model, "custom", "0.4", "weighted-sum", 0.5, 0).result
    strengths = {patches[0][0] for patches in merged.patches.values()}
    assert merged.patches and strengths == {0.4}  # every UNet key patched with w = 0.4, whatever its block
    lines = report.splitlines()
    assert "weights: custom: 0.4 for every block; w = fraction of model B (0 = A, 1 = B)" in lines
    header = lines.index("block    weight   keys         params  method")
    rows = lines[header + 1 : header + 27]
    assert [row.split()[0] for row in rows][0] == "BASE" and rows[-1].split()[0] == "OUT11"
    assert all(row.split()[1] == "0.4" for row in rows)
    assert len(lines) < 45 and not any("\t" in line for line in lines)  # a table, not a line per key
    assert "--" not in report  # no CLI flags in a node's report
