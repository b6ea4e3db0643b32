"""Private implementation of usagetrace.analytics (reports over collected telemetry)."""
