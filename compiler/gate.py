"""The money gate: may a render submit the paid work of its plans? (README "Money").

`--yes` approves; otherwise `--budget` caps the run's total, or else each storyboard's
`budget_usd` caps its own plan, and a storyboard with paid work and no budget needs a
yes. An estimate that is not a finite number never approves anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .pipeline import CompileResult
from .plan import Plan


@dataclass(frozen=True, slots=True)
class BoardCost:
    storyboard: str
    usd: Decimal  # the plan's paid work
    budget_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class Verdict:
    approved: bool
    usd: Decimal  # the run's total
    limit: str = ""  # what it exceeds, in words
    askable: bool = True  # a person may still say yes (not for a broken estimate)


def board_costs(results: Sequence[CompileResult], plans: Mapping[str, Plan]) -> list[BoardCost]:
    """What each storyboard's plan would pay, beside its own `budget_usd`."""
    costs = []
    for result in results:
        budget = result.board.budget_usd if result.board else None
        limit = Decimal(str(budget)) if budget is not None else None
        costs.append(BoardCost(result.path, plans[result.path].usd, limit))
    return costs


def judge(costs: Sequence[BoardCost], *, yes: bool, budget: Decimal | None) -> Verdict:
    usd = sum((cost.usd for cost in costs), Decimal(0))
    if not usd.is_finite() or any(
        c.budget_usd is not None and not c.budget_usd.is_finite() for c in costs
    ):
        return Verdict(False, usd, "the estimate or a budget is not a number", askable=False)
    if budget is not None and not budget.is_finite():
        return Verdict(False, usd, "--budget is not a number", askable=False)
    if yes:
        return Verdict(True, usd)
    if budget is not None:
        return Verdict(usd <= budget, usd, f"--budget ${budget:.2f}")
    over = []
    for cost in costs:
        if cost.usd > 0 and (cost.budget_usd is None or cost.usd > cost.budget_usd):
            shown = (
                "no budget_usd" if cost.budget_usd is None else f"budget_usd ${cost.budget_usd:.2f}"
            )
            over.append(f"{cost.storyboard}: ${cost.usd:.2f}, {shown}")
    return Verdict(not over, usd, "; ".join(over))
