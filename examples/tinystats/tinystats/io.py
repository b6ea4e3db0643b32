"""Reading numbers; imported lazily by users (instrumented by a post-import hook)."""


def parse_numbers(text, sep=","):
    """Parse separated numbers."""
    return [float(part) for part in text.split(sep) if part.strip()]


async def fetch_numbers(text):
    """An async API."""
    return parse_numbers(text)
