"""The catalog service: a small Flask app, as in the user's notes."""

import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index() -> str:
    region = os.environ.get("REGION", "")
    suffix = f" ({region})" if region else ""
    return f"hello from catalog{suffix}\n"


@app.route("/healthz")
def healthz() -> str:
    return "ok\n"
