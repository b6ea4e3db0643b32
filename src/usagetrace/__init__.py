"""usagetrace: consent-first, anonymous usage telemetry on OpenTelemetry."""

__version__ = "0.1.0"
