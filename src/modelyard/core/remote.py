"""One way to open an fsspec URL (the artifact root, the prediction log's root, a bundle).

botocore's defaults are 60 s to connect and 60 s for each read, with botocore's retries and
s3fs's five attempts on top: an object store that accepts connections and then stops answering
(a hung endpoint, a paused process) held a model load or a log upload for minutes, and nothing
counted the failure meanwhile. S3 URLs are opened with bounded timeouts and two attempts in all
(s3fs's; none of botocore's), so such a store fails within about 20 s and the caller's own
retry (the log spool's backoff, the next alias poll) takes over.
"""

from __future__ import annotations

from typing import Any

#: Seconds to open a connection to an object store, and to wait for each of its reads (between
#: two packets, not for a whole file).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
ATTEMPTS = 2
_S3 = {"s3", "s3a"}


def url_to_fs(url: str, **options: Any) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs(url, **options)``, with bounded timeouts for S3."""
    import fsspec

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _S3 and "config_kwargs" not in options:
        options["config_kwargs"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "retries": {"max_attempts": 1, "mode": "standard"},
        }
    fs, path = fsspec.core.url_to_fs(url, **options)
    if scheme in _S3:
        fs.retries = ATTEMPTS  # s3fs's own loop over retryable errors (timeouts among them)
    return fs, str(path)
