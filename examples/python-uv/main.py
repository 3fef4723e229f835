"""A FastAPI app: kiln's Python buildpack installs exactly what uv.lock pins (without the dev
group) and, seeing uvicorn and the ASGI `app`, serves it with uvicorn on $PORT."""

import sys

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def hello() -> dict[str, str]:
    version = ".".join(map(str, sys.version_info[:3]))
    return {"message": f"Hello from FastAPI on Python {version}, built by kiln!"}
