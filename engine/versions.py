"""What a stored result was computed by: a digest of source files and library versions, so a
result recorded with one is known to come from that code."""

import hashlib
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

ENGINE = Path(__file__).parent


def code_digest(files: Iterable[Path], packages: Iterable[str]) -> str:
    """12 hex digits of the files' bytes and the installed versions of ``packages``."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.read_bytes())
    for package in sorted(packages):
        digest.update(f"{package}=={version(package)}".encode())
    return digest.hexdigest()[:12]
