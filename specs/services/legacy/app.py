"""A legacy service, still described by its own Dockerfile."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index() -> str:
    return "hello from legacy\n"
