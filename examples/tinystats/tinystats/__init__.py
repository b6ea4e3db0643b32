"""tinystats: a small statistics library, the instrumented sample package of the demo."""

from ._core import mean, median, summarize
from .table import Table

__version__ = "1.2.0"
__all__ = ["Table", "mean", "median", "summarize", "zscore"]


def zscore(values, value):
    """Return how many standard deviations ``value`` is from the mean of ``values``."""
    m = mean(values)
    sd = (sum((v - m) ** 2 for v in values) / len(values)) ** 0.5
    if sd == 0:
        raise ValueError("values have no spread")
    return (value - m) / sd


import usagetrace  # noqa: E402

usagetrace.instrument(__name__, consent="opt-in")
