"""The explain report: each block's weight, key and parameter counts, what stayed A's and why,
and (optionally) the block every key landed in."""

from __future__ import annotations

from .plan import MergePlan, block_totals, group_kept

SHOWN_PER_REASON = 6


def _fmt_weight(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def explain(plan: MergePlan, *, per_key: bool = True, title: str = "AnimeKit block merge", hide_empty: bool = False) -> str:
    """The report; `hide_empty` leaves out blocks without keys (e.g. UNet blocks in a CLIP merge)."""
    lines = [
        f"{title}: {plan.arch.label}, {plan.arch.weight_count} blocks ({plan.arch.layout_text()})",
        f"method: {plan.method.name}: {plan.method.formula}",
        f"weights: {plan.weights.source}; w = fraction of model B (0 = A, 1 = B)",
        f"  {plan.weights.as_text()}",
        "",
        f"{'block':<6} {'weight':>8} {'keys':>6} {'params':>14}",
    ]
    total_keys = total_params = 0
    for block, weight, n_keys, n_params in block_totals(plan):
        if hide_empty and n_keys == 0:
            continue
        lines.append(f"{block:<6} {_fmt_weight(weight):>8} {n_keys:>6} {n_params:>14,}")
        total_keys += n_keys
        total_params += n_params
    kept = plan.kept
    kept_params = sum(k.numel for k in kept)
    lines.append(f"{'merged':<6} {'':>8} {total_keys:>6} {total_params:>14,}")
    lines.append(f"{'A kept':<6} {'':>8} {len(kept):>6} {kept_params:>14,}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    grouped = group_kept(plan)
    if grouped:
        lines += ["", "stayed model A's:"]
        for reason, keys in grouped.items():
            lines.append(f"  {len(keys)} key(s): {reason}")
            for key in keys[:SHOWN_PER_REASON]:
                lines.append(f"    {key}")
            if len(keys) > SHOWN_PER_REASON:
                lines.append(f"    ... and {len(keys) - SHOWN_PER_REASON} more")
    if plan.only_in_b:
        lines += ["", f"only in model B, not written ({len(plan.only_in_b)}):"]
        lines += [f"    {key}" for key in plan.only_in_b[:SHOWN_PER_REASON]]
        if len(plan.only_in_b) > SHOWN_PER_REASON:
            lines.append(f"    ... and {len(plan.only_in_b) - SHOWN_PER_REASON} more")
    if per_key:
        lines += ["", "key\tblock\tweight"]
        for item in plan.keys:
            where = item.block if item.merged else "A"
            lines.append(f"{item.key}\t{where}\t{_fmt_weight(item.weight) if item.merged else item.reason}")
    return "\n".join(lines) + "\n"
