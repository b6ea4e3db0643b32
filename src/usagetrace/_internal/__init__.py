"""Private implementation of usagetrace. Nothing here is public API."""
