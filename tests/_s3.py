"""A real S3 API server for the tests: moto's server, in this process, on a loopback port.

Its buckets live in this process's memory, so ``stop()`` and ``start()`` take the server down and
bring it back (connections refused in between) with every object it held: an outage, not a loss.
Processes the tests start reach it through the standard AWS variables in ``env``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from tests.integration._server import free_port

#: The standard variables every AWS SDK (botocore, so s3fs too) reads.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        #: What a process needs to reach this server (endpoint and credentials).
        self.env = {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """Down: the listening socket closed, so clients get connection refused."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stop()
        server._server.server_close()

    @property
    def running(self) -> bool:
        return self._server is not None

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())

    def bucket(self) -> str:
        """A new empty bucket's name."""
        name = f"yard-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }
