"""Small Flask and Dash apps used by the web integration tests, and a threaded server on 127.0.0.1."""

from __future__ import annotations

import threading

from werkzeug.serving import make_server


class Server:
    """Serve a WSGI app on a free port of 127.0.0.1 in a thread; stop() shuts it down."""

    def __init__(self, app) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def make_dash_app():
    """A two-page Dash app with client-side navigation (dcc.Location + dcc.Link) and a button callback."""
    from dash import Dash, Input, Output, dcc, html

    app = Dash(__name__)
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            dcc.Link("Home", href="/", id="link-home"),
            dcc.Link("Reports", href="/reports", id="link-reports"),
            html.Div(id="page"),
            html.Button("Go", id="go"),
            html.Div(id="out"),
        ]
    )

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def render(pathname):
        return f"page:{pathname}"

    @app.callback(Output("out", "children"), Input("go", "n_clicks"), prevent_initial_call=True)
    def clicked(n):
        return f"clicked:{n}"

    return app


def make_flask_app():
    """A Flask app with an HTML page, a parameterized route, a JSON API and a health check."""
    from flask import Flask, jsonify

    app = Flask(__name__)

    @app.get("/")
    def index():
        return "<html><body>home</body></html>"

    @app.get("/reports/<int:report_id>")
    def report(report_id):
        return f"<html><body>report {report_id}</body></html>"

    @app.get("/api/data")
    def data():
        return jsonify(ok=True)

    @app.get("/health")
    def health():
        return "<p>ok</p>"

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    return app
