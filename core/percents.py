"""Whole percentages for people: a list of them adds up to 100, as readers check it does.

Rounding each of seven probabilities on its own shows totals of 99 or 101 about half the time.
The most likely value keeps its own rounding (the same figure the card and the headline show),
and the rest of 100 is shared among the others by largest remainder (Hamilton's method).
"""

from __future__ import annotations

from collections.abc import Mapping


def whole_percent(probability: float) -> int:
    """``0.873`` → ``87``: the nearest whole percentage, clipped to 0-100."""
    return round(max(0.0, min(1.0, probability)) * 100)


def whole_percents(probabilities: Mapping[str, float]) -> dict[str, int]:
    """Whole percentages in the same order, adding up to 100 (all 0 when nothing is positive).

    The largest keeps :func:`whole_percent`; each other one is its share of what is left,
    rounded down, and the leftover points go to the largest remainders (earlier names first
    on ties). The largest is rounded as given (probabilities add up to ~1), so it reads exactly
    as the card's confidence; the others are taken as shares of what they hold together.
    None shows more than the largest (for probabilities adding up to ~1): in a near tie with
    it (emotions within a point of it, the largest rounded down) that can leave the total a
    point or two short, at 99 or 98 (seven equal ones show 14 each).
    """
    values = {name: max(0.0, float(p)) for name, p in probabilities.items()}
    if not values or sum(values.values()) <= 0:
        return dict.fromkeys(values, 0)
    top = max(values, key=values.__getitem__)
    result = {top: whole_percent(values[top])}
    others = {name: p for name, p in values.items() if name != top}
    left, others_total = 100 - result[top], sum(others.values())
    if others_total <= 0:
        result[top] = 100  # one emotion holds it all
        return {name: result.get(name, 0) for name in values}
    quotas = {name: p / others_total * left for name, p in others.items()}
    floors = {name: int(q) for name, q in quotas.items()}
    spare = left - sum(floors.values())
    by_remainder = sorted(quotas, key=lambda name: quotas[name] - floors[name], reverse=True)
    for name in by_remainder:
        if spare > 0 and floors[name] < result[top]:  # never above the most likely one
            floors[name] += 1
            spare -= 1
    result.update(floors)
    return {name: result[name] for name in values}
