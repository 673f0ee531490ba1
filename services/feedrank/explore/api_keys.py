"""Per-app API keys on ``Rank`` (``explore.api_keys_file``): who may ask for a feed.

The file is JSON, mode 0600, written by ``feedrank api-keys add APP``::

    {"keys": [{"app": "simulator", "key": "…"}, {"app": "ios", "key": "…"}]}

With the setting unset, Rank takes every caller (the default local stack). Set, a call
must carry ``authorization: Bearer <key>``; none, or an unknown one, is
``UNAUTHENTICATED`` and counted in ``feedrank_rank_requests_total`` like every failed
call. The file is read again when it changes (looked at no more than once a second), so
a key is added or revoked without a restart; a file that stops parsing keeps the keys
read before, with a warning. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from feedrank.core.bearer_tokens import new_token, same_secret
from feedrank.core.durable_files import file_stamp, replace_atomically

log = logging.getLogger(__name__)

RECHECK_S = 1.0


class ApiKeys:
    """The keys in ``path``, each naming its app, followed as the file changes."""

    def __init__(
        self,
        path: Path,
        *,
        recheck_s: float = RECHECK_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp = file_stamp(path)
        self._keys = read_keys(path)  # raises: a service with a broken key file won't start
        self._checked = monotonic()

    def app_of(self, key: str | None) -> str | None:
        """The app ``key`` belongs to, or None for no key or an unknown one."""
        keys = self._current()
        found = None
        for known, app in keys.items():  # every one compared: constant time
            if same_secret(known, key):
                found = app
        return found

    def _current(self) -> dict[str, str]:
        now = self._monotonic()
        with self._lock:
            if now - self._checked < self.recheck_s:
                return self._keys
            self._checked = now
            stamp = file_stamp(self.path)
            if stamp != self._stamp:
                try:
                    self._keys = read_keys(self.path)
                except (OSError, ValueError) as error:
                    log.warning(
                        "API keys in %s unreadable, keeping the old ones: %s", self.path, error
                    )
                else:
                    self._stamp = stamp
                    log.info("API keys reloaded from %s: %d apps", self.path, len(self._keys))
            return self._keys


def read_keys(path: Path) -> dict[str, str]:
    """``{key: app}`` from the file; ValueError naming what is wrong with it."""
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from error
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{path}: want {{"keys": [{{"app": …, "key": …}}]}}')
    keys: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("app") or not entry.get("key"):
            raise ValueError(f"{path}: every entry needs an app and a key")
        keys[str(entry["key"])] = str(entry["app"])
    return keys


def add_key(path: Path, app: str) -> str:
    """A new key for ``app``, added to ``path`` (created 0600 if missing); returns it."""
    if not app.strip():
        raise ValueError("an API key needs the name of the app it is for")
    document: dict[str, list[dict[str, str]]] = {"keys": []}
    if path.exists():
        read_keys(path)  # refuse to extend a broken file
        document = json.loads(path.read_text())
    key = new_token()
    document["keys"].append({"app": app, "key": key})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    replace_atomically(
        path, json.dumps(document, indent=2).encode(), temporary=temporary, mode=0o600
    )
    return key
