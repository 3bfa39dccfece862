"""The prior: Japan Post's published transit times (notifier/core/standard_days.csv), widened.

Japan Post's figures are averages or stated spans, and parcels run later than them: the
research note (RESEARCH_2026_12.md section 1.3) finds real transit about 1.5-2x the standard
days, with a long right tail (EMS to Norway took 6 days once and 15 another time against 3).
Transit time is a sum of many waits that each stretch multiplicatively (a missed flight, a
customs queue), so the model takes the total time from the first scan to delivery to be
lognormal: positive, right-skewed, and fixed by a median and one spread parameter.

- "standard" rows (averages): median 1.75x the standard days (the middle of 1.5-2x), sigma 0.5,
  so the 5th percentile is 0.77x and the 95th 4x the standard days (3 days: 2.3 to 12 days);
  when the sources of a row disagree (EMS to the US: 2-3 and 4) the spread between them adds
  to sigma.
- "span" rows (a stated range and margin, SAL and surface): the stated low end is the 5th
  percentile and 1.5x (the low end of the observed stretch) the high end plus its margin the
  95th: SAL 14 to 42 days, surface 30 to 180 days.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import statistics
from collections.abc import Mapping
from importlib import resources

from notifier.core.eta.types import Lane

TABLE = "standard_days.csv"
STRETCH = 1.75  # real transit / standard days: the middle of the research's 1.5-2x
SIGMA = 0.5  # the lognormal spread around it
SPAN_STRETCH = 1.5  # stated spans: the low end of the observed stretch, on the high end only
_Z95 = statistics.NormalDist().inv_cdf(0.95)
_NORMAL = statistics.NormalDist()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PriorRow:
    """One line of the data file."""

    service: str
    destination: str
    days_low: float
    days_high: float
    kind: str  # "standard" or "span"
    margin_days: float
    quality: str  # "official" or "second-hand"
    retrieved: str
    source: str
    note: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Prior:
    """The prior of one lane: ln(total days from first scan to delivery) ~ Normal(mu, sigma)."""

    mu: float
    sigma: float
    rows: tuple[PriorRow, ...]

    def quantile_given(self, elapsed: float, q: float) -> float:
        """The q-quantile of the total days given that `elapsed` days passed without delivery."""
        done = self.cdf(elapsed)
        level = min(done + q * (1.0 - done), 1.0 - 1e-12)
        return math.exp(self.mu + self.sigma * _NORMAL.inv_cdf(level))

    def cdf(self, days: float) -> float:
        """P(total <= days)."""
        if days <= 0.0:
            return 0.0
        return _NORMAL.cdf((math.log(days) - self.mu) / self.sigma)

    @property
    def median_days(self) -> float:
        return math.exp(self.mu)


def _rows(text: str) -> list[PriorRow]:
    # Comment lines become blank lines (which csv skips) so that line numbers stay the file's.
    lines = "".join("\n" if line.startswith("#") else line for line in text.splitlines(True))
    reader = csv.reader(io.StringIO(lines))
    header: list[str] | None = None
    rows: list[PriorRow] = []
    for cells in reader:
        if not cells:
            continue
        if header is None:
            header = cells
            continue
        where = f"{TABLE} line {reader.line_num}"
        raw = dict(zip(header, cells, strict=False))
        try:
            row = PriorRow(
                service=raw["service"].strip().casefold(),
                destination=raw["destination"].strip().upper(),
                days_low=float(raw["days_low"]),
                days_high=float(raw["days_high"]),
                kind=raw["kind"].strip(),
                margin_days=float(raw["margin_days"]),
                quality=raw["quality"].strip(),
                retrieved=raw["retrieved"].strip(),
                source=raw["source"].strip(),
                note=raw["note"].strip(),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{where}: {error}") from error
        if row.kind not in ("standard", "span"):
            raise ValueError(f"{where}: kind {row.kind!r} is neither 'standard' nor 'span'")
        if not 0 < row.days_low <= row.days_high or row.margin_days < 0:
            raise ValueError(f"{where}: days_low, days_high or margin_days out of range")
        rows.append(row)
    return rows


@functools.cache
def prior_rows() -> tuple[PriorRow, ...]:
    """Every row of the data file; read once, the file ships with the package."""
    return tuple(_rows(resources.files("notifier.core").joinpath(TABLE).read_text(encoding="utf-8")))


def fit(rows: tuple[PriorRow, ...]) -> Prior:
    """The lognormal of one lane from its rows (all of one kind)."""
    low = min(row.days_low for row in rows)
    high = max(row.days_high for row in rows)
    if all(row.kind == "standard" for row in rows):
        # Disagreeing sources: their ratio read as a 5-95% spread of its own, added in quadrature.
        extra = math.log(high / low) / (2 * _Z95)
        return Prior(mu=math.log(STRETCH * (low + high) / 2), sigma=math.hypot(SIGMA, extra), rows=rows)
    top = SPAN_STRETCH * max(row.days_high + row.margin_days for row in rows)
    return Prior(mu=(math.log(low) + math.log(top)) / 2, sigma=math.log(top / low) / (2 * _Z95), rows=rows)


@functools.cache
def priors() -> Mapping[tuple[str, str], Prior]:
    """(service, destination or "*") -> Prior, from the data file."""
    grouped: dict[tuple[str, str], list[PriorRow]] = {}
    for row in prior_rows():
        grouped.setdefault((row.service, row.destination), []).append(row)
    found: dict[tuple[str, str], Prior] = {}
    for (service, destination), rows in grouped.items():
        # A service-wide figure holds for every country; a country's rows can only widen it.
        default = grouped.get((service, "*"), []) if destination != "*" else []
        together = tuple(rows) + tuple(default)
        if len({row.kind for row in together}) != 1:
            raise ValueError(f"{TABLE}: {service}:{destination} mixes standard days and spans")
        found[(service, destination)] = fit(together)
    return found


def prior_for(lane: Lane) -> Prior | None:
    """The lane's prior: its country's rows, else the service-wide figure, else None."""
    table = priors()
    return table.get((lane.service, lane.destination)) or table.get((lane.service, "*"))
