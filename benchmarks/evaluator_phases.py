"""Where an event's time goes in the worker, per phase, with 1,000 and with ``--stored`` events stored.

    .venv/bin/python benchmarks/evaluator_phases.py                  # the stores of evaluator.py
    .venv/bin/python benchmarks/evaluator_phases.py --stored 100000  # quicker
    .venv/bin/python benchmarks/evaluator_phases.py --stored 100000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test   # SQLite and PostgreSQL

The same stores and windows as ``evaluator.py``; each phase of the worker's batch is timed by a wrapper
around the method that does it (a few hundred nanoseconds a call, on both sides alike). Rounds alternate
early and late; the median of each phase counts. Read it beside ``evaluator.py``: a phase that costs more
late than early is where the ratio comes from.
"""

from __future__ import annotations

import functools
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evaluator import Place, all_stores, arguments, close_all, timed_window
from sqlalchemy.engine.default import DefaultDialect

from bridge.domain.evaluation import LearnerLedger
from bridge.services.effects import EffectWriter
from bridge.services.ledgers import LedgerReader
from bridge.worker import Worker, tune_garbage_collection

# (label, class, method); indented labels are parts of the phase above them.
# (label, class, method); indented labels are parts of the phase above them. Some phases are of one
# database only: SQLite reads as it goes, PostgreSQL groups its reads into fewer round trips.
PHASES: list[tuple[str, type, str]] = [
    ("claiming the batch", Worker, "_claim"),
    ("locking and reading learners", LedgerReader, "lock_learners"),
    ("  of which: new learners (SQLite)", LedgerReader, "_create_learners"),
    ("  of which: reading state documents (SQLite)", LedgerReader, "_read_states"),
    ("  of which: all in one round trip (PostgreSQL)", LedgerReader, "_lock_in_one_trip"),
    ("evaluating (LearnerLedger.observe)", LearnerLedger, "observe"),
    ("  of which: an award's records read (SQLite)", LedgerReader, "_load_awards"),
    ("awards of learners completing a badge (PostgreSQL)", LedgerReader, "read_awards"),
    ("course members (PostgreSQL: sent with the effects)", EffectWriter, "write_course_members"),
    ("writing effects", EffectWriter, "write_effects"),
    ("  of which: award evidence", EffectWriter, "_evidence"),
    ("committing", DefaultDialect, "do_commit"),
    ("the whole batch", Worker, "_run_batch"),
]


@contextmanager
def timing(spent: Counter[str]) -> Iterator[None]:
    """Each phase's method wrapped to add its time to ``spent``; unwrapped on leaving."""
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in PHASES]
    for label, owner, name in PHASES:
        setattr(owner, name, _timed(getattr(owner, name), label, spent))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _timed(method: Callable[..., Any], label: str, spent: Counter[str]) -> Callable[..., Any]:
    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started

    return timed


def main() -> int:
    args = arguments(__doc__ or "", window=5_000)
    tune_garbage_collection()
    workdir = Path(tempfile.mkdtemp(prefix="bridge-phases-"))
    places: list[Place] = []
    try:
        stores = all_stores(workdir, args, places)
        sides: dict[tuple[str, str], list[Counter[str]]] = {}
        for _ in range(args.rounds):
            for each in stores:
                for side, first in (("early", 1000), ("late", args.stored)):
                    each.place.restore(side)
                    spent: Counter[str] = Counter()
                    with timing(spent):
                        seconds = timed_window(
                            each.settings, each.place, first, args.window, args.learners, each.minutes_apart
                        )
                    # What the window's timing holds beside its batches: the closing checkpoint.
                    spent["checkpoint and the rest"] = seconds - spent["the whole batch"]
                    sides.setdefault((each.place.name, side), []).append(spent)
        labels = [label for label, _, _ in PHASES if label != "the whole batch"]
        labels += ["the whole batch", "checkpoint and the rest"]
        for each in stores:
            name = each.place.name
            title = f"{name}: µs per event (median of rounds)"
            print(f"\n{title:52}{'early':>10}{'late':>10}{'late - early':>14}")
            for label in labels:
                early, late = (
                    statistics.median(spent[label] for spent in sides[(name, side)]) / args.window * 1e6
                    for side in ("early", "late")
                )
                print(f"{label:52}{early:10.1f}{late:10.1f}{late - early:+14.1f}")
        return 0
    finally:
        close_all(places)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
