"""The explain report, short answer first: one line per block (weight, keys, parameters, what is done
to it), then what stayed model A's and why, with advice worded for the caller (CLI flags or node
inputs, see naming.py). The block every key landed in is listed only when asked for (`keys=True`):
it is a line per key, about 1,200 on SD1.5 and 2,500 on SDXL.
"""

from __future__ import annotations

from .naming import CLI, Naming
from .plan import VAE_KEPT, MergePlan, block_totals, group_kept

EXAMPLES_PER_REASON = 2
COPIED = "copy A"  # the method column of a block whose weight 0 leaves it exactly A's


def _keys(n: int) -> str:
    return f"{n:,} key" if n == 1 else f"{n:,} keys"


def _fmt_weight(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _advice(reason: str, naming: Naming) -> str:
    """What the user can do about a reason a key stayed A's (empty when nothing)."""
    if reason == VAE_KEPT:
        return f"{naming('vae', 'merge')} merges it under BASE, {naming('vae', 'file')} bakes a VAE file in"
    return ""


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:EXAMPLES_PER_REASON])
    return f"e.g. {shown}" + (", ..." if len(keys) > EXAMPLES_PER_REASON else "")


def explain(
    plan: MergePlan,
    *,
    keys: bool = False,
    naming: Naming = CLI,
    title: str = "AnimeKit block merge",
    hide_empty: bool = False,
) -> str:
    """The report; `keys` adds every key's block and weight; `hide_empty` leaves out blocks without
    keys (e.g. the UNet blocks in a CLIP merge)."""
    copies_at_zero = plan.method.zero_keeps_a
    lines = [
        f"{title}: {plan.arch.label}, {plan.arch.weight_count} blocks ({plan.arch.layout_text()})",
        f"method: {plan.method.name}: {plan.method.formula}",
        f"weights: {plan.weights.source}; w = fraction of model B (0 = A, 1 = B)",
        f"  {plan.weights.as_text()}",
        "",
        f"{'block':<6} {'weight':>8} {'keys':>6} {'params':>14}  method",
    ]
    total_keys = total_params = 0
    copied: list[str] = []
    copied_keys = 0
    for block, weight, n_keys, n_params in block_totals(plan):
        if hide_empty and n_keys == 0:
            continue
        what = COPIED if copies_at_zero and weight == 0 else plan.method.name
        if what == COPIED and n_keys:
            copied.append(block)
            copied_keys += n_keys
        lines.append(f"{block:<6} {_fmt_weight(weight):>8} {n_keys:>6} {n_params:>14,}  {what}")
        total_keys += n_keys
        total_params += n_params
    kept = plan.kept
    lines.append(f"{'total':<6} {'':>8} {total_keys:>6} {total_params:>14,}")
    lines.append("")
    lines.append(f"merged with {plan.method.name}: {_keys(total_keys - copied_keys)}")
    if copied:
        lines.append(f"stayed model A's at weight 0: {_keys(copied_keys)} ({', '.join(copied)})")
    grouped = group_kept(plan)
    if grouped:
        kept_params = sum(k.numel for k in kept)
        lines.append(f"stayed model A's, never merged: {_keys(len(kept))} ({kept_params:,} parameters):")
        for reason, reason_keys in grouped.items():
            lines.append(f"  {_keys(len(reason_keys))}: {reason}; {_examples(reason_keys)}")
            advice = _advice(reason, naming)
            if advice:
                lines.append(f"    ({advice})")
    for note in (*plan.notes, plan.weights.extrapolation_note()):
        if note:
            lines.append(f"note: {note}")
    if plan.only_in_b:
        lines.append(f"only in model B, not written: {_keys(len(plan.only_in_b))}; {_examples(list(plan.only_in_b))}")
    if keys:
        lines += ["", "key\tblock\tweight"]
        for item in plan.keys:
            where = item.block if item.merged else "A"
            lines.append(f"{item.key}\t{where}\t{_fmt_weight(item.weight) if item.merged else item.reason}")
    elif naming.options.get("explain_keys"):
        lines.append(f"(the block and weight of every key: {naming('explain_keys')})")
    return "\n".join(lines) + "\n"
