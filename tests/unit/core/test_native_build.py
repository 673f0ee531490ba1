"""The C extension builds from its source alone (what the Docker image does where pip put
the package), and a machine without a compiler is told so, not failed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from feedrank.core.native_build import SOURCE, build


def test_the_extension_builds_beside_a_copy_of_its_source_and_encodes(
    tmp_path: Path,
) -> None:
    source = tmp_path / SOURCE.name
    shutil.copyfile(SOURCE, source)
    (tmp_path / f"{SOURCE.stem}.cpython-000-stale.so").write_bytes(b"old")
    built = build(source)
    assert built is not None
    assert built.parent == tmp_path
    assert sorted(path.name for path in tmp_path.glob("*.so")) == [built.name]  # stale gone
    spec = importlib.util.spec_from_file_location(SOURCE.stem, built)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    versions, values = np.array([300], dtype=np.int64), np.array([[2.0]], dtype=np.float32)
    # Pool item "p": score 0.5, features b"F" then one float, version 300 (varint ac 02).
    score, value = np.float64(0.5).tobytes(), values.tobytes()
    expected = b"\x62\x14\x0a\x01p\x19" + score + b"F" + value + b"\x30\xac\x02"
    assert module.encode_pool(0x62, ["p"], [0.5], b"F", values, None, 0, versions) == expected


def test_without_a_compiler_it_says_so_and_builds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / SOURCE.name
    shutil.copyfile(SOURCE, source)
    assert build(source, compiler="no-such-cc") is None
    assert "no C compiler (no-such-cc)" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.so"))
