"""Optional integrations, one module each; import the one you need.

* :mod:`usagetrace.integrations.click` - click and typer CLIs (``pip install 'usagetrace[click]'``)
* :mod:`usagetrace.integrations.argparse` - argparse CLIs (standard library)
* :mod:`usagetrace.integrations.crash` - unhandled exceptions (standard library)
* :mod:`usagetrace.integrations.flask` - Flask page views (``pip install 'usagetrace[flask]'``)
* :mod:`usagetrace.integrations.dash` - Dash page views and callbacks (``pip install 'usagetrace[dash]'``)
* :mod:`usagetrace.integrations.email` - e-mail opens and clicks (standard library)

Every integration sends through the package's own consent-gated pipeline:
nothing is recorded while consent is off, and only allowlisted attribute keys
ever leave the process. None of them raises into the host program.
"""
