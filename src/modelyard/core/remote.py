"""One way to open an fsspec URL (the artifact root, the prediction log's root, a bundle).

botocore's defaults are 60 s to connect and 60 s for each read, with botocore's retries and
s3fs's five attempts on top: an object store that accepts connections and then stops answering
(a hung endpoint, a paused process) held a model load or a log upload for minutes, and nothing
counted the failure meanwhile. S3 URLs are opened with bounded timeouts and two attempts in all
(s3fs's; none of botocore's), so such a store fails within about 20 s and the caller's own
retry (the log spool's backoff, the next alias poll) takes over.
"""

from __future__ import annotations

import re
from typing import Any

from modelyard.errors import ConfigError

#: Seconds to open a connection to an object store, and to wait for each of its reads (between
#: two packets, not for a whole file).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
ATTEMPTS = 2
_S3 = {"s3", "s3a"}
#: Object stores whose URLs start with a bucket (or container): ``SCHEME://BUCKET/PREFIX``.
_BUCKET_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
#: A URL's scheme (two letters at least: ``C:/models`` is a Windows folder), its slashes, the rest.
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(/*)(.*)", re.DOTALL)


def check_url(url: str, *, what: str, variable: str) -> None:
    """Refuse a root that looks like a URL but is not one fsspec would read as meant: a scheme
    and one slash (``s3:/models/x``, which is a relative local folder) or an object store's URL
    without a bucket (``s3://``, ``s3:///x``). ``what`` names the root in the message and
    ``variable`` the setting to fix."""
    match = _URL.fullmatch(url)
    if match is None:
        return
    scheme, slashes, rest = match.groups()
    if slashes == "/" and scheme.lower() != "file":  # file:/path is a file URL
        raise ConfigError(
            f"The {what} {url!r} has one '/' after '{scheme}:'; write {scheme}://{rest} in "
            f"{variable} (or a folder path without a scheme)."
        )
    if scheme.lower() in _BUCKET_SCHEMES and (slashes != "//" or not rest.split("/", 1)[0]):
        raise ConfigError(
            f"The {what} {url!r} has no bucket; give {scheme}://BUCKET/PREFIX in {variable}."
        )


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
