"""Show a plan: a table for people (rich), a stable JSON document for tools."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from .model import model_data
from .pipeline import CompileResult
from .plan import Plan

_ACTION_STYLE = {
    "submit": "yellow",
    "remake": "green",
    "re-attach": "cyan",
    "download": "blue",
    "fetch": "blue",
    "reuse": "dim",
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
                "action": str(planned.action),
                "paid": planned.paid,
                "creates": planned.creates,
                "state": planned.state,
                "reasons": list(planned.reasons),
                "external_task_id": planned.external_task_id,
                "attempt": planned.attempt if planned.creates else None,
                "after": task.after,
            }
        )
    return rows


def element_rows(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "element": planned.element.name,
            "action": str(planned.action),
            "creates": planned.creates,
            "state": planned.state,
            "external_task_id": planned.external_task_id or None,
        }
        for planned in plan.elements
    ]


def _usd_per_unit(result: CompileResult) -> Decimal:
    """The storyboard's price of a unit (models.yaml's default when it sets none)."""
    value = result.board.usd_per_unit if result.board else model_data()["usd_per_unit"]
    return Decimal(str(value))


def image_rows(plan: Plan) -> list[dict[str, Any]]:
    """Generated images and stills: Omni-Image tasks, priced in image units."""
    return [
        {
            "kind": planned.job.kind,
            "name": planned.job.key,
            "scene": planned.job.scene,
            "shot": planned.job.shot if planned.job.kind == "still" else None,
            "seconds": planned.job.seconds if planned.job.kind == "still" else None,
            "image_units": float(planned.job.units),
            "usd": float(planned.job.usd),
            "action": str(planned.action),
            "paid": planned.paid,
            "creates": planned.creates,
            "state": planned.state,
            "reasons": list(planned.reasons),
            "external_task_id": planned.external_task_id or None,
        }
        for planned in (*plan.images, *plan.stills)
    ]


def sound_rows(plan: Plan) -> list[dict[str, Any]]:
    """Custom voices, narration and effects: sound calls, priced in units (§11.2).

    `unsure` marks a paid TTS call: it has no external_task_id, so a call cut off by a
    timeout may have been paid and cannot be looked up (README "Sound").
    """
    return [
        {
            "kind": planned.job.kind,
            "name": planned.job.key,
            "label": planned.job.label,
            "units": float(planned.job.units),
            "usd": float(planned.job.usd),
            "action": str(planned.action),
            "paid": planned.paid,
            "creates": planned.creates,
            "unsure": planned.unsure,
            "state": planned.state,
            "reasons": list(planned.reasons),
            "external_task_id": planned.external_task_id,
        }
        for planned in plan.sounds
    ]


def plan_json(result: CompileResult, plan: Plan) -> dict[str, Any]:
    usd_per_unit = _usd_per_unit(result)
    charged = plan.charged_units
    return {
        "storyboard": result.path,
        "backend": plan.backend,
        "scenes": plan_rows(result, plan),
        "elements": element_rows(plan),
        "images": image_rows(plan),
        "sounds": sound_rows(plan),
        "disabled": list(plan.disabled),
        "totals": {
            "submit": len(plan.paid),
            "creates": plan.creates,
            "units": float(plan.units),
            "image_submit": len(plan.paid_images),
            "image_creates": plan.image_creates,
            "image_units": float(plan.image_units),
            "sound_submit": len(plan.paid_sounds),
            "sound_creates": plan.sound_creates,
            "sound_units": float(plan.sound_units),
            "usd": float(plan.usd),
            "charged_units": float(charged),
            "charged_usd": float(round(charged * usd_per_unit, 4)),
        },
    }


def print_plan(result: CompileResult, plan: Plan, out: TextIO, *, free: bool = False) -> None:
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
        ("action", "left"),
        ("why", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in plan_rows(result, plan):
        style = _ACTION_STYLE.get(row["action"], "")
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
            f"[{style}]{row['action']}[/]" if style else row["action"],
            ", ".join([row["state"], *row["reasons"]]),
        )
    for element in element_rows(plan):
        table.add_row(
            f"element {element['element']}",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            element["action"],
            element["state"],
        )
    for image in image_rows(plan):
        style = _ACTION_STYLE.get(image["action"], "")
        table.add_row(
            f"{image['kind']} {image['name']}",
            "",
            "",
            f"{image['seconds']:g}" if image["seconds"] is not None else "",
            "",
            "",
            f"{image['image_units']:g} img",
            f"${image['usd']:.2f}",
            f"[{style}]{image['action']}[/]" if style else image["action"],
            ", ".join([image["state"], *image["reasons"]]),
        )
    for sound in sound_rows(plan):
        style = _ACTION_STYLE.get(sound["action"], "")
        marker = " †" if sound["unsure"] else ""
        table.add_row(
            f"{sound['label']}{marker}",
            "",
            "",
            "",
            "",
            "",
            f"{sound['units']:.2f}",
            f"${sound['usd']:.2f}",
            f"[{style}]{sound['action']}[/]" if style else sound["action"],
            ", ".join([sound["state"], *sound["reasons"]]),
        )
    for scene in plan.disabled:
        table.add_row(scene, "", "", "", "", "", "", "", "[dim]skip[/]", "enabled: false")
    console.print(table)
    if any(s.unsure for s in plan.sounds):
        console.print(
            "† TTS has no external_task_id: a call cut off by a timeout may have been paid "
            "and cannot be looked up, so storyboard never resends it by itself."
        )
    charged = plan.charged_units
    charged_usd = charged * _usd_per_unit(result)
    counts: dict[str, int] = {}
    for planned in plan.takes:
        counts[planned.state] = counts.get(planned.state, 0) + 1
    detail = ", ".join(f"{n} {state}" for state, n in counts.items())
    if free:
        cost = f"≈ ${plan.usd:.2f} on Kling, free on the emulator"
        remakes = sum(t.action == "remake" for t in plan.takes)
        if remakes:
            detail += f"; {remakes} placeholder(s) made again (free)"
        ledger = f"The emulator has counted {float(charged):g} units so far (nothing billed)."
    else:
        cost = f"≈ ${plan.usd:.2f}"
        ledger = f"Charged so far: {float(charged):g} units (${charged_usd:.2f})."
    extras = []  # what else is paid beside the takes, each in its own units
    if plan.images or plan.stills:
        extras.append(f"{len(plan.paid_images)} image(s) ({plan.image_units:g} image units)")
    if plan.sounds:
        extras.append(f"{len(plan.paid_sounds)} sound call(s) ({plan.sound_units:.2f} units)")
    if plan.stills and not plan.takes:
        states: dict[str, int] = {}
        for planned_image in (*plan.images, *plan.stills):
            states[planned_image.state] = states.get(planned_image.state, 0) + 1
        made = ", ".join(f"{n} {state}" for state, n in states.items())
        console.print(
            f"Plan: {len(plan.paid_images)} image(s) to make "
            f"({plan.image_units:g} image units, {cost}); {len(plan.stills)} still(s), "
            f"no clip; {made}. {ledger}"
        )
        return
    if not extras:
        console.print(
            f"Plan: {len(plan.paid)} to submit ({plan.units:.2f} units, {cost}); {detail}. {ledger}"
        )
        return
    console.print(
        f"Plan: {len(plan.paid)} to submit ({plan.units:.2f} units), {', '.join(extras)}; "
        f"{cost}; {detail}. {ledger}"
    )
