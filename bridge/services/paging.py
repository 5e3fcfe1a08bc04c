"""Keyset paging over a table's id: a page is the rows past the last id seen, in id order.

Ids only grow, so a page never repeats or skips a row that existed when paging began, whatever is
inserted meanwhile: newest first, new rows land before the first page; oldest first, after the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select

Row = TypeVar("Row")


@dataclass(frozen=True)
class Keyset:
    limit: int
    after: int | None = None  # the id of the last row of the previous page; None: the first page
    newest_first: bool = True


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    last_id: int | None  # where the next page starts; None: this was the last page


def paged(query: Select[Any], id_column: Any, keyset: Keyset) -> Select[Any]:
    """``query`` narrowed to the page after ``keyset.after``, with one row more to tell if more follow."""
    if keyset.after is not None:
        query = query.where(id_column < keyset.after if keyset.newest_first else id_column > keyset.after)
    order = id_column.desc() if keyset.newest_first else id_column.asc()
    return query.order_by(order).limit(keyset.limit + 1)


def page_of(rows: Sequence[Row], keyset: Keyset, id_of: Any) -> Page[Row]:
    """The page from the rows ``paged`` read (at most ``limit`` of them) and where the next one starts."""
    shown = list(rows[: keyset.limit])
    more = len(rows) > keyset.limit
    return Page(shown, id_of(shown[-1]) if more and shown else None)
