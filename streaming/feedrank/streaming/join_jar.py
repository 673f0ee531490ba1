"""Where the Java join engine's jar lives in the jar cache, without importing PyFlink.

The join's keyed operator has a Java engine (``engine/``, Java package
``feedrank.streaming.engine``: the same semantics and label state as ``join_logic``, no
Python per record). ``feedrank setup`` compiles it
(``feedrank.stack.join_jar_build``) against the Flink jars PyFlink ships, with the Java
classes protoc generates from ``events.proto`` and the protobuf runtime inside. The
jar's name carries a digest of everything it is built from, so a changed source or
version makes a new jar instead of running a stale one.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.metadata import version
from pathlib import Path

from feedrank.core.settings import Settings

JAVA_SOURCES = Path(__file__).resolve().parent / "engine"  # Java package feedrank.streaming.engine
# The protobuf runtime bundled into the jar and the protoc that generates its classes
# (Maven Central's com.google.protobuf:protobuf-java and :protoc, one release).
PROTOBUF_JAVA_VERSION = "4.33.5"


class MissingJoinJarError(RuntimeError):
    """The Java join engine's jar is not built (or not for these sources)."""


def events_proto() -> bytes:
    """The event contracts the Java classes are generated from."""
    return (resources.files("feedrank.v1") / "events.proto").read_bytes()


def java_sources() -> list[Path]:
    """The engine's Java sources, in a stable order."""
    return sorted(JAVA_SOURCES.rglob("*.java"))


def source_digest(flink_version: str) -> str:
    """A short digest of the sources, the contracts and the versions the jar is built from."""
    digest = hashlib.sha256()
    for part in (PROTOBUF_JAVA_VERSION.encode(), flink_version.encode(), events_proto()):
        digest.update(len(part).to_bytes(8, "big") + part)
    for source in java_sources():
        name, text = str(source.relative_to(JAVA_SOURCES)).encode(), source.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name + len(text).to_bytes(8, "big") + text)
    return digest.hexdigest()[:16]


def join_jar_path(settings: Settings) -> Path:
    """Where the jar cache keeps the engine built from these sources."""
    cache = settings.paths.jar_cache.expanduser()
    return cache / "feedrank" / f"feedrank-join-{source_digest(flink_version())}.jar"


def flink_version() -> str:
    """The version of the installed PyFlink (the Flink the jar is compiled against)."""
    return version("apache-flink")


def require_join_jar(settings: Settings) -> Path:
    """The jar's path, or a clear error telling how to build it."""
    jar = join_jar_path(settings)
    if not jar.is_file():
        raise MissingJoinJarError(
            f"the Java join engine is not built for these sources ({jar}): "
            "run `feedrank setup` (or `make setup`) first"
        )
    return jar
