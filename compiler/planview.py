"""Show a plan: a table for people (rich), a stable JSON document for tools."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from .pipeline import CompileResult
from .plan import Plan

_STATE_STYLE = {
    "new": "green",
    "changed": "yellow",
    "failed-before": "red",
    "interrupted": "magenta",
    "forced": "yellow",
    "in-flight": "cyan",
    "unchanged": "dim",
    "disabled": "dim",
}


def plan_rows(result: CompileResult, plan: Plan) -> list[dict[str, Any]]:
    tasks = {task.scene: task for task in result.tasks}
    rows = []
    for planned in plan.takes:
        task = tasks[planned.job.scene]
        payload = task.payload
        rows.append(
            {
                "scene": planned.job.scene,
                "take": planned.job.take,
                "takes": task.takes,
                "selected": planned.job.take == task.selected,
                "shots": len(payload.get("multi_prompt", [])) or 1,
                "seconds": task.seconds,
                "mode": payload["mode"],
                "sound": payload["sound"],
                "units": task.units,
                "usd": task.usd,
                "state": planned.state,
                "reasons": list(planned.reasons),
                "paid": planned.paid,
                "after": task.after,
            }
        )
    return rows


def plan_json(result: CompileResult, plan: Plan, usd_per_unit: float) -> dict[str, Any]:
    charged = plan.charged_units
    return {
        "storyboard": result.path,
        "scenes": plan_rows(result, plan),
        "disabled": list(plan.disabled),
        "totals": {
            "submit": len(plan.paid),
            "units": plan.units,
            "usd": plan.usd,
            "charged_units": float(charged),
            "charged_usd": float(round(charged * Decimal(str(usd_per_unit)), 4)),
        },
    }


def print_plan(
    result: CompileResult, plan: Plan, usd_per_unit: float, out: TextIO, *, free: bool = False
) -> None:
    console = Console(file=out, width=None if out.isatty() else 120, highlight=False)
    table = Table(title=result.path, title_justify="left", show_edge=False, pad_edge=False)
    for column, justify in (
        ("scene", "left"),
        ("take", "right"),
        ("shots", "right"),
        ("seconds", "right"),
        ("mode", "left"),
        ("sound", "left"),
        ("units", "right"),
        ("USD", "right"),
        ("state", "left"),
        ("why", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in plan_rows(result, plan):
        style = _STATE_STYLE.get(row["state"], "")
        take = str(row["take"]) + ("*" if row["selected"] and row["takes"] > 1 else "")
        scene = row["scene"] + (f" ← {row['after']}" if row["after"] else "")
        table.add_row(
            scene,
            take,
            str(row["shots"]),
            f"{row['seconds']:g}",
            row["mode"],
            row["sound"],
            f"{row['units']:.2f}",
            f"${row['usd']:.2f}",
            f"[{style}]{row['state']}[/]",
            ", ".join(row["reasons"]),
        )
    for scene in plan.disabled:
        table.add_row(scene, "", "", "", "", "", "", "", "[dim]disabled[/]", "enabled: false")
    console.print(table)
    charged = plan.charged_units
    charged_usd = charged * Decimal(str(usd_per_unit))
    counts: dict[str, int] = {}
    for planned in plan.takes:
        counts[planned.state] = counts.get(planned.state, 0) + 1
    detail = ", ".join(f"{n} {state}" for state, n in counts.items())
    if free:
        cost = f"≈ ${plan.usd:.2f} on Kling, free on the emulator"
        ledger = f"The emulator has counted {charged:g} units so far (nothing billed)."
    else:
        cost = f"≈ ${plan.usd:.2f}"
        ledger = f"Charged so far: {charged:g} units (${charged_usd:.2f})."
    console.print(
        f"Plan: {len(plan.paid)} to submit ({plan.units:.2f} units, {cost}); {detail}. {ledger}"
    )
