"""Build the Java join engine's jar (``streaming/feedrank/streaming/engine``) into the jar cache.

Maven Central provides the protobuf runtime and the matching ``protoc``; protoc
generates the event classes from ``events.proto``; ``javac`` compiles them and the
engine against the Flink jars PyFlink ships (the exact Flink that will run it) and the
Kafka connector (whose relocated Kafka client the engine's decision log uses); the jar
holds the engine, the event classes and the protobuf runtime. Built once per digest of
its sources (:mod:`feedrank.streaming.join_jar`), in a staging directory renamed into
place, so an interrupted build is redone rather than half-used.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path

from feedrank.core.settings import Settings
from feedrank.stack.maven import require_tool, run_checked, run_maven
from feedrank.streaming.connector_jar import require_connector_jar
from feedrank.streaming.join_jar import (
    PROTOBUF_JAVA_VERSION,
    events_proto,
    java_sources,
    join_jar_path,
)
from feedrank.streaming.pyflink_distribution import pyflink_home

JAVA_RELEASE = "17"


def build_join_jar(settings: Settings) -> Path:
    """The engine's jar, built first when the cache has none for these sources."""
    target = join_jar_path(settings)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    protobuf_jar, protoc = _protobuf_tools(settings)
    with tempfile.TemporaryDirectory(prefix="join-jar-", dir=target.parent) as work:
        staging = Path(work)
        generated, classes = staging / "generated", staging / "classes"
        generated.mkdir()
        classes.mkdir()
        proto_dir = staging / "proto" / "feedrank" / "v1"
        proto_dir.mkdir(parents=True)
        (proto_dir / "events.proto").write_bytes(events_proto())
        run_checked(
            [
                str(protoc),
                f"-I{staging / 'proto'}",
                f"--java_out={generated}",
                str(proto_dir / "events.proto"),
            ],
            "protoc failed building the Java join engine",
        )
        classpath = [*sorted((pyflink_home() / "lib").glob("*.jar"))]
        classpath += sorted((pyflink_home() / "opt").glob("flink-python-*.jar"))
        classpath += [require_connector_jar(settings), protobuf_jar]
        sources = [*sorted(generated.rglob("*.java")), *java_sources()]
        run_checked(
            [
                require_tool(
                    "javac", "`javac` is not on PATH: the Java join engine needs a JDK 17"
                ),
                "--release",
                JAVA_RELEASE,
                "-nowarn",
                "-encoding",
                "UTF-8",
                "-d",
                str(classes),
                "-cp",
                os.pathsep.join(str(path) for path in classpath),
                *(str(source) for source in sources),
            ],
            "javac failed building the Java join engine",
        )
        jar = staging / target.name
        _package(jar, classes, protobuf_jar)
        jar.rename(target)
    return target


def _protobuf_tools(settings: Settings) -> tuple[Path, Path]:
    """The protobuf runtime jar and protoc of ``PROTOBUF_JAVA_VERSION``, fetched once."""
    directory = settings.paths.jar_cache.expanduser() / "protobuf" / PROTOBUF_JAVA_VERSION
    runtime = directory / f"protobuf-java-{PROTOBUF_JAVA_VERSION}.jar"
    protoc = directory / f"protoc-{PROTOBUF_JAVA_VERSION}-linux-x86_64.exe"
    for path, artifact in (
        (runtime, f"com.google.protobuf:protobuf-java:{PROTOBUF_JAVA_VERSION}"),
        (protoc, f"com.google.protobuf:protoc:{PROTOBUF_JAVA_VERSION}:exe:linux-x86_64"),
    ):
        if not path.is_file():
            directory.mkdir(parents=True, exist_ok=True)
            run_maven("dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={directory}")
    protoc.chmod(protoc.stat().st_mode | stat.S_IXUSR)
    return runtime, protoc


def _package(jar: Path, classes: Path, protobuf_jar: Path) -> None:
    """A jar of the compiled classes with the protobuf runtime's classes beside them."""
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: feedrank\n")
        for path in sorted(classes.rglob("*")):
            if path.is_file():
                out.write(path, str(path.relative_to(classes)))
        with zipfile.ZipFile(protobuf_jar) as runtime:
            for entry in runtime.infolist():
                if not entry.is_dir() and not entry.filename.startswith("META-INF/"):
                    out.writestr(entry, runtime.read(entry))
