"""One-line notes a chapter prints beside its own run, so that a reader never takes a smoke
test for a result (the results of record come from committed files and shipped weights)."""

from __future__ import annotations

__all__ = ["run_note"]

_NOTES = {
    "ci": ("Your run, tier 'ci': a smoke test of the code path on a handful of patients for one or "
           "two epochs. Its numbers are noise, not results; the results of record are shown beside it."),
    "teaching": ("Your run, tier 'teaching': the laptop-size run. Its numbers are results at that size "
                 "and vary by a few points with the seed."),
    "paper": ("Your run, tier 'paper': the paper-size network (a GPU run). Compare it with the results "
              "of record, which came from the same tier."),
}


def run_note(tier: str) -> str:
    """What a chapter's own run at ``tier`` is worth, in one line (Markdown-safe text).

    Parameters
    ----------
    tier : str
        ``"ci"``, ``"teaching"`` or ``"paper"``; another name gets a generic note.

    Returns
    -------
    str
    """
    return _NOTES.get(tier, f"Your run, tier {tier!r}: a custom size; compare it with the results of record.")
