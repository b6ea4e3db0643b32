"""Implementation details; the public names are re-exported by the package."""


def mean(values):
    """Return the arithmetic mean."""
    values = list(values)
    if not values:
        raise ValueError("mean of an empty sequence")
    return sum(values) / len(values)


def median(values):
    """Return the median."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of an empty sequence")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarize(values, *, digits=2):
    """Return mean and median, rounded (calls the package itself: not separate usages)."""
    return {"mean": round(mean(values), digits), "median": round(median(values), digits)}
