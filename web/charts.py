"""Trend charts as server-rendered SVG: no chart library runs in the browser.

A chart shows one instrument's totals over time as points joined by a line, over the
instrument's severity bands, with the baseline marked: the current medication trial's
(``server.trials``: the last score before its start, switch or dose change), else the
first total of the episode. The trial's medication changes are marked on the same time
axis, each with its drug and dose, and listed in the description.
It is an image to assistive technology (``role="img"``) whose ``<title>`` and ``<desc>``
say in words what the picture shows, so nobody needs to see it to read the values.

The bands come from the instrument modules (``SEVERITY_FROM``), so a chart can never
disagree with the severity that scoring reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from server.instruments import gad7, phq9
from server.measures import MeasuredInstrument
from server.timezones import DEFAULT_ZONE

# The instruments measured against a baseline are the ones charted.
Charted = MeasuredInstrument

# Callers pass the reader's zone (server.timezones); this is only the fallback.
DEFAULT_TZ: Final = DEFAULT_ZONE


@dataclass(frozen=True)
class Band:
    """Totals ``low``..``high`` (both included) share the severity ``name``."""

    low: int
    high: int
    name: str

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def short_label(self) -> str:
        return "mod. severe" if self.name == "moderately_severe" else self.label


def _bands(severity_from: Sequence[tuple[int, str]], total_max: int) -> tuple[Band, ...]:
    lows = sorted(severity_from)
    return tuple(
        Band(low, lows[index + 1][0] - 1 if index + 1 < len(lows) else total_max, name)
        for index, (low, name) in enumerate(lows)
    )


BANDS: Final[dict[Charted, tuple[Band, ...]]] = {
    "phq9": _bands(phq9.SEVERITY_FROM, phq9.TOTAL_MAX),
    "gad7": _bands(gad7.SEVERITY_FROM, gad7.TOTAL_MAX),
}
TOTAL_MAX: Final[dict[Charted, int]] = {"phq9": phq9.TOTAL_MAX, "gad7": gad7.TOTAL_MAX}
NAMES: Final[dict[Charted, str]] = {"phq9": "PHQ-9 depression", "gad7": "GAD-7 anxiety"}

# Light fills, darker with severity; the line and points are drawn in the brand blue on
# top, so every fill keeps enough contrast with them.
BAND_FILLS: Final = ("#e6f4ea", "#f3f6dc", "#fdf1d6", "#fde3cf", "#f9d7d4")


@dataclass(frozen=True)
class ChartPoint:
    at: datetime
    total: int
    # The baseline this point is judged against (its trial's) and when it was taken;
    # None: the first total.
    baseline: int | None = None
    baseline_at: datetime | None = None


@dataclass(frozen=True)
class ChartEvent:
    """A medication change on the time axis ("Increase sertraline 100 mg")."""

    at: datetime
    label: str


def format_day(at: datetime, tz: str = DEFAULT_TZ) -> str:
    local = at.astimezone(ZoneInfo(tz))
    return f"{local.day} {local:%b %Y}"


def _short_day(at: datetime, tz: str) -> str:
    local = at.astimezone(ZoneInfo(tz))
    return f"{local.day} {local:%b}"


def band_of(instrument: Charted, total: int) -> Band:
    return next(band for band in BANDS[instrument] if band.low <= total <= band.high)


@dataclass(frozen=True)
class TrendChart:
    """Geometry and markup of one chart; coordinates are in the SVG's viewBox units."""

    instrument: Charted
    points: tuple[ChartPoint, ...]
    chart_id: str
    title: str
    tz: str = DEFAULT_TZ
    events: tuple[ChartEvent, ...] = ()
    # Where the baseline comes from, in words, when it is a trial's ("the last score
    # before Start sertraline 50 mg on 2 Mar 2026").
    baseline_source: str | None = None
    width: int = 400
    height: int = 250
    left: int = 28
    right: int = 6
    top: int = 12
    bottom: int = 46
    # The bands' names sit in a gutter on the right that the line never enters.
    gutter: int = 84
    # Keeps the first and last point off the plot's edges.
    inset: int = 16

    def __post_init__(self) -> None:
        high = TOTAL_MAX[self.instrument]
        for point in self.points:
            if not 0 <= point.total <= high:
                raise ValueError(f"{self.instrument} total must be from 0 to {high}, "
                                 f"got {point.total}")
            if point.at.tzinfo is None:
                raise ValueError("chart points need timezone-aware times")
        if any(b.at < a.at for a, b in zip(self.points, self.points[1:], strict=False)):
            raise ValueError("chart points must be in chronological order")
        if any(event.at.tzinfo is None for event in self.events):
            raise ValueError("chart events need timezone-aware times")

    @property
    def plot_left(self) -> float:
        return float(self.left)

    @property
    def plot_right(self) -> float:
        return float(self.width - self.right)

    @property
    def data_right(self) -> float:
        return self.plot_right - self.gutter

    @property
    def plot_top(self) -> float:
        return float(self.top)

    @property
    def plot_bottom(self) -> float:
        return float(self.height - self.bottom)

    @property
    def baseline(self) -> int | None:
        """The latest point's baseline: its trial's, else the first total."""
        if not self.points:
            return None
        latest = self.points[-1].baseline
        return self.points[0].total if latest is None else latest

    def x(self, at: datetime) -> float:
        """Time runs left to right over the scores and the medication changes; a single
        instant sits in the middle."""
        times = [p.at for p in self.points] + [e.at for e in self.events]
        first, last = min(times), max(times)
        span = (last - first).total_seconds()
        if span <= 0:
            return round((self.plot_left + self.data_right) / 2, 2)
        usable = self.data_right - self.plot_left - 2 * self.inset
        share = (at - first).total_seconds() / span
        return round(self.plot_left + self.inset + share * usable, 2)

    def y(self, value: float) -> float:
        """0 at the bottom, the instrument's maximum at the top."""
        high = TOTAL_MAX[self.instrument]
        share = value / high
        return round(self.plot_bottom - share * (self.plot_bottom - self.plot_top), 2)

    def band_box(self, band: Band) -> tuple[float, float]:
        """The band's top and bottom y. Totals are whole numbers, so a band reaches half
        a point beyond its ends: a total of 5 sits inside "mild", not on its edge."""
        high = TOTAL_MAX[self.instrument]
        top = self.y(min(band.high + 0.5, high))
        bottom = self.y(max(band.low - 0.5, 0))
        return top, bottom

    def description(self) -> str:
        name = NAMES[self.instrument]
        if not self.points:
            return f"No {name} scores yet."
        values = ", ".join(
            f"{p.total} ({band_of(self.instrument, p.total).label}) on "
            f"{format_day(p.at, self.tz)}" for p in self.points)
        count = len(self.points)
        scores = "score" if count == 1 else "scores"
        text = f"{count} {name} {scores}, out of {TOTAL_MAX[self.instrument]}: {values}."
        last = self.points[-1].total
        first = self.baseline
        assert first is not None
        source = f" ({self.baseline_source})" if self.baseline_source else ""
        if count > 1:
            if last < first:
                change = f"down {first - last} from the baseline of {first}"
            elif last > first:
                change = f"up {last - first} from the baseline of {first}"
            else:
                change = f"the same as the baseline of {first}"
            text += f" The latest is {change}{source}."
        else:
            text += f" This is the baseline, {first}{source}."
        if self.events:
            text += " Medication changes: " + "; ".join(
                f"{e.label} on {format_day(e.at, self.tz)}" for e in self.events) + "."
        return text + " Lower is better."

    def _label_days(self) -> list[ChartPoint]:
        if len(self.points) <= 6:
            return list(self.points)
        middle = self.points[len(self.points) // 2]
        return [self.points[0], middle, self.points[-1]]

    def svg(self) -> Markup:
        title_id, desc_id = f"{self.chart_id}-title", f"{self.chart_id}-desc"
        parts: list[str] = [
            '<svg xmlns="http://www.w3.org/2000/svg" class="trend-chart"'
            f' id="{escape(self.chart_id)}"'
            f' viewBox="0 0 {self.width} {self.height}" role="img"'
            f' aria-labelledby="{escape(title_id)} {escape(desc_id)}"'
            f' data-instrument="{self.instrument}" data-points="{len(self.points)}">',
            f'<title id="{escape(title_id)}">{escape(self.title)}</title>',
            f'<desc id="{escape(desc_id)}">{escape(self.description())}</desc>',
        ]
        width = self.plot_right - self.plot_left
        for index, band in enumerate(BANDS[self.instrument]):
            top, bottom = self.band_box(band)
            parts.append(
                f'<rect class="band band-{band.name}" data-band="{band.name}"'
                f' data-low="{band.low}" data-high="{band.high}" x="{self.plot_left}"'
                f' y="{top}" width="{width}" height="{round(bottom - top, 2)}"'
                f' fill="{BAND_FILLS[index % len(BAND_FILLS)]}"/>')
            parts.append(
                f'<text class="band-label" x="{self.plot_right - 4}"'
                f' y="{round((top + bottom) / 2 + 4, 2)}" text-anchor="end" font-size="13"'
                f' fill="#3d4556">{escape(band.short_label)}</text>')
            parts.append(
                f'<text class="tick" x="{self.plot_left - 5}" y="{round(bottom + 4, 2)}"'
                f' text-anchor="end" font-size="13" fill="#3d4556">{band.low}</text>')
        parts.append(
            f'<text class="tick" x="{self.plot_left - 5}" y="{round(self.plot_top + 4, 2)}"'
            f' text-anchor="end" font-size="13" fill="#3d4556">'
            f'{TOTAL_MAX[self.instrument]}</text>')
        parts.append(
            f'<line class="axis" x1="{self.plot_left}" y1="{self.plot_bottom}"'
            f' x2="{self.plot_right}" y2="{self.plot_bottom}" stroke="#5b6478"/>')
        parts.append(
            f'<line class="divider" x1="{self.data_right}" y1="{self.plot_top}"'
            f' x2="{self.data_right}" y2="{self.plot_bottom}" stroke="#ffffff"'
            f' stroke-width="2"/>')
        if self.points:
            parts.extend(self._data_marks())
        parts.append("</svg>")
        return Markup("".join(parts))  # noqa: S704 - every value above is escaped or a number

    def _event_marks(self) -> list[str]:
        """A dark vertical line per medication change, a triangle at its foot, and the
        change in words as its tooltip (the description lists them all)."""
        parts: list[str] = []
        for event in self.events:
            x = self.x(event.at)
            foot = self.plot_bottom
            parts.append(
                f'<g class="med-event" data-at="{escape(event.at.isoformat())}"'
                f' data-label="{escape(event.label)}"><title>'
                f'{escape(format_day(event.at, self.tz))}: {escape(event.label)}</title>'
                f'<line x1="{x}" y1="{self.plot_top}" x2="{x}" y2="{foot}" stroke="#6b2fa0"'
                f' stroke-width="2" stroke-dasharray="2 3"/>'
                f'<path d="M{x},{foot - 9} L{round(x - 6, 2)},{foot} L{round(x + 6, 2)},{foot} Z"'
                f' fill="#6b2fa0"/></g>')
        return parts

    def _data_marks(self) -> list[str]:
        parts: list[str] = self._event_marks()
        baseline_total = self.baseline
        assert baseline_total is not None
        base_y = self.y(baseline_total)
        parts.append(
            f'<line class="baseline" x1="{self.plot_left}" y1="{base_y}"'
            f' x2="{self.data_right}" y2="{base_y}" stroke="#1d2433" stroke-width="1"'
            f' stroke-dasharray="5 4" data-total="{baseline_total}"/>')
        legend_y = self.height - 6
        parts.append(
            f'<g class="legend" font-size="13" fill="#1d2433">'
            f'<circle cx="{self.plot_left + 6}" cy="{legend_y - 4}" r="5" fill="#ffffff"'
            f' stroke="#1f5fa8" stroke-width="2.5"/>'
            f'<line x1="{self.plot_left + 14}" y1="{legend_y - 4}" x2="{self.plot_left + 34}"'
            f' y2="{legend_y - 4}" stroke="#1d2433" stroke-dasharray="5 4"/>'
            f'<text x="{self.plot_left + 40}" y="{legend_y}">baseline {baseline_total}'
            f' ({"trial" if self.baseline_source else "first score"})</text>'
            + (f'<path d="M{self.plot_left + 190},{legend_y} l-6,0 l6,-9 l6,9 Z" fill="#6b2fa0"/>'
               f'<text x="{self.plot_left + 200}" y="{legend_y}">medication change</text>'
               if self.events else "") + '</g>')
        coords = [(self.x(p.at), self.y(p.total)) for p in self.points]
        if len(coords) > 1:
            path = " ".join(f"{x},{y}" for x, y in coords)
            parts.append(f'<polyline class="trend-line" points="{path}" fill="none"'
                         f' stroke="#1f5fa8" stroke-width="2.5" stroke-linejoin="round"/>')
        base_at = self.points[-1].baseline_at
        base_index = next((i for i, p in enumerate(self.points) if p.at == base_at), 0)
        for index, (point, (x, y)) in enumerate(zip(self.points, coords, strict=True)):
            band = band_of(self.instrument, point.total)
            kind = "point baseline-point" if index == base_index else "point"
            radius = 7 if index == base_index else 5
            fill = "#ffffff" if index == base_index else "#1f5fa8"
            parts.append(
                f'<circle class="{kind}" cx="{x}" cy="{y}" r="{radius}" fill="{fill}"'
                f' stroke="#1f5fa8" stroke-width="2.5" data-total="{point.total}"'
                f' data-at="{escape(point.at.isoformat())}"><title>'
                f'{escape(format_day(point.at, self.tz))}: {point.total} ({escape(band.label)})'
                f'</title></circle>')
            label_y = y - 11 if y - 11 > self.plot_top + 10 else y + 22
            parts.append(
                f'<text class="value" x="{x}" y="{round(label_y, 2)}" text-anchor="middle"'
                f' font-size="15" font-weight="700" fill="#1d2433">{point.total}</text>')
        for point in self._label_days():
            parts.append(
                f'<text class="day" x="{self.x(point.at)}" y="{self.plot_bottom + 16}"'
                f' text-anchor="middle" font-size="13" fill="#3d4556">'
                f'{escape(_short_day(point.at, self.tz))}</text>')
        return parts


def trend_chart(
    instrument: Charted,
    points: Sequence[ChartPoint],
    *,
    chart_id: str,
    title: str | None = None,
    tz: str = DEFAULT_TZ,
    events: Sequence[ChartEvent] = (),
    baseline_source: str | None = None,
) -> Markup:
    """The SVG markup for one instrument's series (chronological, timezone-aware), with
    the medication changes on the same time axis."""
    chart = TrendChart(instrument, tuple(points), chart_id,
                       title or f"{NAMES[instrument]} scores over time", tz=tz,
                       events=tuple(events), baseline_source=baseline_source)
    return chart.svg()
