"""The dashboard's throughput chart as inline SVG, drawn on the server: no chart
library, no script, nothing fetched from the network.

Stacked bars per minute (succeeded below, failed above), a y axis with round
ticks, time labels every ten minutes, axis titles and a legend. Every bar has a
``<title>``, so hovering a minute tells its numbers.
"""

from __future__ import annotations

import math

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from ..overview import Throughput

WIDTH, HEIGHT = 760, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 40, 44
SUCCEEDED_COLOUR = "#3a8f3a"
FAILED_COLOUR = "#c0392b"


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... that is at least ``value`` (and >= 1)."""
    if value <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(value))  # value >= 2: a whole power
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def throughput_svg(data: Throughput) -> SafeString:
    """``data`` as an SVG bar chart, ready to put in a page. Numbers are formatted
    here; every text is escaped."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [ok + bad for ok, bad in zip(data.succeeded, data.failed, strict=True)]
    top = nice_ceiling(max(totals, default=0))
    slot_w = plot_w / max(len(totals), 1)
    bar_w = max(slot_w - 2, 1.0)
    baseline = TOP + plot_h
    title = _("Tasks finished per minute, last %(n)d minutes") % {"n": len(totals)}

    def y(value: float) -> float:
        return baseline - value / top * plot_h

    def hhmm(index: int) -> str:
        return timezone.localtime(data.minutes[index]).strftime("%H:%M")

    out = [
        f'<svg class="tdb-chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="tdb-chart-title" '
        f'font-size="11" font-family="system-ui, sans-serif">',
        f'<title id="tdb-chart-title">{escape(title)}</title>',
    ]
    for tick in sorted({0, top // 2, top}):  # grid lines and the y axis's labels
        out.append(
            f'<line class="tdb-grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}" stroke="#8888" stroke-width="1"/>'
            f'<text class="tdb-axis" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'fill="currentColor">{tick}</text>'
        )
    for i, (ok, bad) in enumerate(zip(data.succeeded, data.failed, strict=True)):
        x = LEFT + i * slot_w + (slot_w - bar_w) / 2
        label = _("%(time)s: %(ok)d succeeded, %(bad)d failed") % {
            "time": hhmm(i),
            "ok": ok,
            "bad": bad,
        }
        # The whole column is the hover target, even for an empty minute.
        out.append(
            f'<g class="tdb-minute"><title>{escape(label)}</title>'
            f'<rect x="{x:.1f}" y="{TOP}" width="{bar_w:.1f}" height="{plot_h}" '
            f'fill="transparent"/>'
        )
        if ok:
            out.append(_bar("tdb-ok", x, bar_w, y(ok), baseline, SUCCEEDED_COLOUR))
        if bad:
            out.append(_bar("tdb-failed", x, bar_w, y(ok + bad), y(ok), FAILED_COLOUR))
        out.append("</g>")
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{baseline}" y2="{baseline}" '
        f'stroke="currentColor" stroke-width="1"/>'
    )
    for i, minute in enumerate(data.minutes):  # a time label on every tenth minute
        if timezone.localtime(minute).minute % 10 == 0:
            out.append(
                f'<text class="tdb-axis" x="{LEFT + (i + 0.5) * slot_w:.1f}" '
                f'y="{baseline + 15}" text-anchor="middle" fill="currentColor">{hhmm(i)}</text>'
            )
    x_title = _("time (%(zone)s), one bar per minute") % {
        "zone": timezone.get_current_timezone_name()
    }
    out.append(
        f'<text class="tdb-axis-title" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" '
        f'text-anchor="middle" fill="currentColor">{escape(x_title)}</text>'
        f'<text class="tdb-axis-title" transform="translate(16 {TOP + plot_h / 2:.1f}) '
        f'rotate(-90)" text-anchor="middle" fill="currentColor">'
        f"{escape(_('tasks per minute'))}</text>"
    )
    out.append(_legend())
    out.append("</svg>")
    return mark_safe("".join(out))  # every text above went through escape()


def _bar(kind: str, x: float, width: float, top: float, bottom: float, colour: str) -> str:
    height = max(bottom - top, 0.5)
    return (
        f'<rect class="{kind}" x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" '
        f'height="{height:.1f}" fill="{colour}"/>'
    )


def _legend() -> str:
    entries = [
        ("tdb-ok", SUCCEEDED_COLOUR, _("succeeded")),
        ("tdb-failed", FAILED_COLOUR, _("failed, cancelled or aborted")),
    ]
    out = ['<g class="tdb-legend">']
    x = LEFT
    for kind, colour, text in entries:
        out.append(
            f'<rect class="{kind}" x="{x}" y="12" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 17}" y="22" fill="currentColor">{escape(text)}</text>'
        )
        x += 32 + 6 * len(text)
    out.append("</g>")
    return "".join(out)
