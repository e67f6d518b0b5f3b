"""The serving limit for benchmarks/serving.py: a bare ASGI callable that reads the request body,
parses it with orjson and answers a constant JSON document. Run under uvicorn with uvloop and
httptools, lifespan off:

    python -m uvicorn bare_asgi:app --loop uvloop --http httptools --lifespan off
"""

from __future__ import annotations

from typing import Any

import orjson

OUTPUT = {"name": "predict", "shape": [1], "datatype": "INT64", "data": [0]}
BODY = orjson.dumps({"outputs": [OUTPUT]})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
END = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    raw = b"".join(chunks)
    if raw:
        orjson.loads(raw)
    await send(START)
    await send(END)
