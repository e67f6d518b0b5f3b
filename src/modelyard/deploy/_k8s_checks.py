"""The checks ``yard k8s`` makes of its options before writing anything: image references,
Kubernetes names, labels and resource quantities, each refused with one sentence. ``yard build``
checks its ``--base-image`` with the same ``check_image``."""

from __future__ import annotations

import re
from decimal import Decimal

from modelyard.errors import InvalidInputError

_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_SCALE = (
    {"m": Decimal("0.001"), "": Decimal(1)}
    | {s: Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")}
    | {f"{s}i": Decimal(1024) ** (i + 1) for i, s in enumerate("KMGTPE")}
)
# The image reference grammar of the distribution project (what docker, containerd and registries
# accept): [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST].
_DOMAIN_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}))?"
)
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")
_LABEL_KEY = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
)


def check_image(
    image: str,
    *,
    what: str = "Image",
    example: str = "registry.example.com/team/churn:3 (what 'yard build' was tagged and pushed as)",
) -> None:
    """``image`` is a container image reference (``[REGISTRY/]PATH[:TAG][@DIGEST]``); ``what``
    names it in the error, which gives ``example`` as the next step."""
    match = _IMAGE.fullmatch(image)
    if match is None or len(image) > 255 or not (match["tag"] or match["digest"]):
        raise InvalidInputError(
            f"{what} {image!r} is not a container image reference with a tag or digest; give "
            f"e.g. {example}."
        )


def check_name(option: str, name: str) -> None:
    """``name`` is an RFC 1123 label, as Secret and namespace names must be."""
    if not (re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", name)):
        raise InvalidInputError(
            f"{option} {name!r} is not a Kubernetes name (lowercase letters, digits and '-', at "
            "most 63)."
        )


def check_label(key: str, value: str) -> None:
    if _LABEL_KEY.fullmatch(key) is None or _LABEL_VALUE.fullmatch(value) is None:
        raise InvalidInputError(
            f"Label {key}={value!r} is not a Kubernetes label (e.g. release=prometheus)."
        )


def quantity(option: str, text: str) -> Decimal:
    """``text`` as a number of cores or bytes (``500m`` is 0.5, ``1Ki`` 1024)."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise InvalidInputError(
            f"{option} {text!r} is not a Kubernetes quantity; give e.g. 500m or 2 (CPU), 512Mi "
            "or 2Gi (memory)."
        )
    return Decimal(match[1]) * _SCALE[match[2] or ""]
