"""tools/draw_rooms.py: the rooms drawn from the code's imports, and the staleness check."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "draw_rooms.py"


@pytest.fixture(scope="module")
def draw_rooms() -> ModuleType:
    spec = importlib.util.spec_from_file_location("draw_rooms", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_arrow_a_longer_path_implies_is_not_drawn(draw_rooms: ModuleType) -> None:
    imports = {"explore": {"models", "core"}, "models": {"core"}, "core": set()}

    assert draw_rooms.drawn_arrows(imports) == {
        "explore": {"models"},
        "models": {"core"},
        "core": set(),
    }


def test_the_table_lists_every_import_and_the_drawing_sits_between_the_markers(
    draw_rooms: ModuleType,
) -> None:
    imports = {"cli": {"explore"}, "explore": {"models", "core"}, "models": {"core"}, "core": set()}
    folders = {room: f"x/feedrank/{room}/" for room in imports}

    drawing = draw_rooms.render(imports, folders)
    document = f"# title\n\n{draw_rooms.BEGIN}\nstale drawing\n{draw_rooms.END}\n\nafter\n"
    updated = draw_rooms.replace_drawing(document, drawing)

    assert "  explore --> models" in drawing
    assert "  explore --> core" not in drawing
    assert "| `feedrank.explore` | `x/feedrank/explore/` | `core`, `models` |" in drawing
    assert "cli -->" not in drawing
    assert updated.startswith("# title\n\n")
    assert updated.endswith("\n\nafter\n")
    assert "stale drawing" not in updated


def test_a_doc_without_markers_is_an_error(draw_rooms: ModuleType) -> None:
    with pytest.raises(ValueError, match="no drawing markers"):
        draw_rooms.replace_drawing("# no markers\n", "drawing")
