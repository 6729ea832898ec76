"""A small Flask app, served by brimd as ``flask_app:app`` or ``flask_app:create_app(...)``.

Nothing here is imported by the test process: brimd imports it, from this
directory (``--chdir`` or ``PYTHONPATH``).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request


def create_app(greeting: str = "hello from flask") -> Flask:
    """The app factory, as Flask's tutorial writes one."""
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        return f"{greeting} pid={os.getpid()}\n"

    @app.post("/echo")
    def echo() -> bytes:
        return request.get_data()

    @app.get("/info")
    def info():  # type: ignore[no-untyped-def]
        return jsonify(path=request.path, query=request.args.to_dict(),
                       script_name=request.script_root, pid=os.getpid(),
                       server=request.environ.get("SERVER_SOFTWARE", ""))

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("the Flask view failed on purpose")

    return app


app = create_app()
