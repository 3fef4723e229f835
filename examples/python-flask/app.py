"""A Flask app: kiln's Python buildpack installs requirements.txt and, seeing gunicorn and
the `app` object, serves it with gunicorn on $PORT."""

import sys

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    version = ".".join(map(str, sys.version_info[:3]))
    return f"Hello from Flask on Python {version}, built by kiln!\n"
