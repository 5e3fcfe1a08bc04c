"""Charts as server-rendered SVG: no script, no charting library, nothing from a CDN.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and described by its ``<desc>``, which
states every number the chart draws, so a screen reader reads the figures rather than the shapes. Only
presentation attributes are used (the pages' CSP allows no inline style), and the drawing scales with
its ``viewBox`` from a phone-wide frame to a desktop one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

from bridge.services.analytics import BadgeReport, TierFunnel
from bridge.services.instructor_page import percent as whole_percent
from bridge.web.strings import text

INK, MUTED, BAR, GRID = "#0f172a", "#475569", "#1d4ed8", "#cbd5e1"
WIDTH = 480  # viewBox units: at 320 px a unit is about 0.6 px, so text stays readable
FONT = 'font-family="system-ui, sans-serif"'


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # what the bar measures (a badge, a tier, a week)
    value: float  # its length, from 0 to the chart's maximum
    shown: str  # the value as written beside the bar


def _svg(chart_id: str, title: str, desc: str, height: float, body: list[str]) -> Markup:
    chart_id = re.sub(r"[^A-Za-z0-9_-]", "-", chart_id)  # badge ids make ids: keep them plain
    head = (
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg" {FONT}>'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def bar_chart(chart_id: str, title: str, desc: str, bars: Sequence[Bar], maximum: float) -> Markup:
    """Horizontal bars, each under its label (long badge names fit a narrow frame this way)."""
    row = 42
    area = WIDTH - max(56, 8 * max((len(bar.shown) for bar in bars), default=0) + 12)  # room for values
    body: list[str] = []
    for index, bar in enumerate(bars):
        top = 6 + index * row
        length = 0.0 if maximum <= 0 else max(0.0, min(bar.value / maximum, 1.0)) * area
        body.append(
            f'<text x="0" y="{top + 13}" font-size="14" fill="{INK}">{escape(bar.label)}</text>'
            f'<rect x="0" y="{top + 19}" width="{area}" height="14" fill="{GRID}" opacity="0.35"/>'
            f'<rect x="0" y="{top + 19}" width="{length:.1f}" height="14" fill="{BAR}"/>'
            f'<text x="{area + 6}" y="{top + 31}" font-size="13" fill="{INK}">{escape(bar.shown)}</text>'
        )
    return _svg(chart_id, title, desc, 10 + len(bars) * row, body)


def column_chart(chart_id: str, title: str, desc: str, columns: Sequence[Bar]) -> Markup:
    """Vertical columns over time (weeks), each with its count above and its label below."""
    left, top, bottom, height = 28, 18, 36, 200
    plot = height - top - bottom
    step = (WIDTH - left) / max(len(columns), 1)
    highest = max((c.value for c in columns), default=0)
    scale = max(highest, 1)
    body = [
        f'<line x1="{left}" y1="{top + plot}" x2="{WIDTH}" y2="{top + plot}" stroke="{MUTED}"/>',
        f'<text x="{left - 6}" y="{top + plot}" font-size="11" fill="{MUTED}" text-anchor="end">0</text>',
        f'<line x1="{left}" y1="{top}" x2="{WIDTH}" y2="{top}" stroke="{GRID}"/>',
        f'<text x="{left - 6}" y="{top + 4}" font-size="11" fill="{MUTED}" '
        f'text-anchor="end">{scale:g}</text>',
    ]
    for index, column in enumerate(columns):
        x = left + index * step
        tall = plot * max(column.value, 0) / scale
        middle = x + step / 2
        body.append(
            f'<rect x="{x + step * 0.18:.1f}" y="{top + plot - tall:.1f}" width="{step * 0.64:.1f}" '
            f'height="{tall:.1f}" fill="{BAR}"/>'
            f'<text x="{middle:.1f}" y="{top + plot - tall - 4:.1f}" font-size="11" fill="{INK}" '
            f'text-anchor="middle">{escape(column.shown)}</text>'
        )
        if (len(columns) - 1 - index) % 2 == 0 or len(columns) <= 6:  # every other one, this week's shown
            body.append(
                f'<text x="{middle:.1f}" y="{top + plot + 16}" font-size="11" fill="{MUTED}" '
                f'text-anchor="middle">{escape(column.label)}</text>'
            )
    return _svg(chart_id, title, desc, height, body)


def percent(rate: float | None) -> int | None:
    """A rate of 0..1 as a whole percentage, rounded down (99.6% is not yet everyone); None for none."""
    return None if rate is None else whole_percent(rate)


def completion_chart(reports: Sequence[BadgeReport]) -> Markup:
    bars, said = [], []
    for report in reports:
        share = percent(report.completion_rate)
        if share is None:
            bars.append(Bar(report.name, 0, text("instructor.nobody_eligible")))
            said.append(text("chart.completion.nobody", badge=report.name))
            continue
        bars.append(Bar(report.name, share, text("instructor.percent", percent=share)))
        said.append(
            text(
                "chart.completion.item",
                count=report.eligible,
                badge=report.name,
                earned=report.earned,
                percent=share,
            )
        )
    desc = " ".join([text("chart.completion.desc"), *said])
    return bar_chart("completion", text("chart.completion.title"), desc, bars, 100)


def week_label(monday: date) -> str:
    return f"{monday.day} {monday:%b}"


def weeks_chart(weeks: Sequence[tuple[date, int]]) -> Markup:
    columns = [Bar(week_label(monday), count, str(count)) for monday, count in weeks]
    said = [text("chart.weeks.item", count=count, date=week_label(monday)) for monday, count in weeks]
    desc = " ".join([text("chart.weeks.desc", count=len(weeks)), *said])
    return column_chart("weeks", text("chart.weeks.title"), desc, columns)


def funnel_chart(funnel: TierFunnel) -> Markup:
    bars = [Bar(text("chart.funnel.started"), funnel.started, str(funnel.started))]
    said = [text("chart.funnel.desc", count=funnel.started, badge=funnel.name)]
    for step in funnel.tiers:
        tier, share = step.tier.capitalize(), percent(step.rate)
        shown = str(step.reached) if share is None else f"{step.reached} ({share}%)"
        bars.append(Bar(tier, step.reached, shown))
        if share is None:
            said.append(text("chart.funnel.item_none", count=step.reached, tier=tier))
        else:
            said.append(text("chart.funnel.item", count=step.reached, tier=tier, percent=share))
    title = text("chart.funnel.title", badge=funnel.name)
    return bar_chart(f"funnel-{funnel.badge_id}", title, " ".join(said), bars, max(funnel.started, 1))
