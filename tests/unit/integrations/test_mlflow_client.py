"""The MLflow bridge's tracking URIs: what is recorded and shown never holds a password, and a
server that does not answer is refused at once (no MLflow retries)."""

from __future__ import annotations

import socket
import time

import pytest

from modelyard.errors import StorageError
from modelyard.integrations._mlflow_client import check_reachable, clean_uri


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
        ("https://alice:s3cret@mlflow.example.com/prefix/", "https://mlflow.example.com/prefix"),
        ("https://token@mlflow.example.com:8443", "https://mlflow.example.com:8443"),
        ("databricks", "databricks"),
    ],
)
def test_recorded_uris_have_no_credentials(given: str, recorded: str) -> None:
    assert clean_uri(given) == recorded


def test_a_port_nobody_listens_on_is_refused_in_one_line_without_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        started = time.monotonic()
        with pytest.raises(StorageError) as caught:
            check_reachable(f"http://bob:pw@127.0.0.1:{port}")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"The MLflow tracking server http://127.0.0.1:{port} does not answer")
    assert "pw" not in message and "\n" not in message
    assert message.endswith("start it or fix MLFLOW_TRACKING_URI.")


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # accepts the connection, never answers
        started = time.monotonic()
        with pytest.raises(StorageError, match="does not answer"):
            check_reachable(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout_s=0.3)
    assert time.monotonic() - started < 3


def test_local_stores_are_left_to_mlflow() -> None:
    check_reachable("sqlite:///nowhere/mlflow.db")
    check_reachable("file:///nowhere/mlruns")
