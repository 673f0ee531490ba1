"""Draw feedrank's rooms and the imports between them into docs/architecture.md.

    .venv/bin/python tools/draw_rooms.py           # rewrite the drawing in the doc
    .venv/bin/python tools/draw_rooms.py --check   # exit 1 when the doc is stale (make lint)

A room is a direct child of the ``feedrank`` namespace (``feedrank.explore``, ...). The
imports come from the code itself, through grimp (the graph import-linter checks), so
the drawing cannot drift from the code: ``make lint`` fails when it does. The drawing
is a Mermaid graph (GitHub renders it) between two markers in the doc, followed by a
table of each room's folder and the rooms it imports. The rules the drawing must obey
are the import-linter contracts in ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- rooms: drawn by tools/draw_rooms.py; do not edit by hand -->"
END = "<!-- rooms: end -->"
SOURCE_ROOTS = ("proto", "core", "services", "streaming", "learners", "deploy", "apps", "tools")
TOP_ROOM = "cli"
"""The command line imports most rooms; its arrows are listed, not drawn."""


def room_imports(package: str = "feedrank") -> dict[str, set[str]]:
    """Each room of ``package`` and the other rooms its modules import directly."""
    graph = grimp.build_graph(package)
    rooms: dict[str, set[str]] = {}
    for module in graph.modules:
        parts = module.split(".")
        if len(parts) < 2:
            continue
        importer = parts[1]
        rooms.setdefault(importer, set())
        for imported in graph.find_modules_directly_imported_by(module):
            imported_parts = imported.split(".")
            if len(imported_parts) >= 2 and imported_parts[1] != importer:
                rooms[importer].add(imported_parts[1])
    return rooms


def room_folders(rooms: Iterable[str], root: Path = ROOT) -> dict[str, str]:
    """The folder each room lives in, relative to the repository."""
    folders: dict[str, str] = {}
    for room in rooms:
        for source_root in SOURCE_ROOTS:
            folder = root / source_root / "feedrank" / room
            if folder.is_dir():
                folders[room] = f"{source_root}/feedrank/{room}/"
                break
    return folders


def drawn_arrows(imports: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The arrows worth drawing: ``imports`` less those a longer path already implies.

    ``explore -> core`` is left out of the drawing when ``explore -> models -> core``
    is in it (a transitive reduction); the table below the drawing lists every import.
    """

    def reachable(start: str, skipping: str) -> set[str]:
        seen: set[str] = set()
        stack = [room for room in imports.get(start, set()) if room != skipping]
        while stack:
            room = stack.pop()
            if room not in seen:
                seen.add(room)
                stack.extend(imports.get(room, set()))
        return seen

    return {
        room: {other for other in imported if other not in reachable(room, skipping=other)}
        for room, imported in imports.items()
    }


def render(imports: Mapping[str, set[str]], folders: Mapping[str, str]) -> str:
    """The Mermaid drawing and the table, between the markers."""
    arrows = drawn_arrows({room: set(imported) for room, imported in imports.items()})
    lines = [BEGIN, "", "```mermaid", "graph TD"]
    for room in sorted(imports):
        if room != TOP_ROOM:
            lines.append(f'  {room}["{room}<br/><small>{folders.get(room, "")}</small>"]')
    for room in sorted(imports):
        if room == TOP_ROOM:
            continue
        lines.extend(f"  {room} --> {imported}" for imported in sorted(arrows[room]))
    lines += ["```", ""]
    lines += [
        f"`{TOP_ROOM}` (`{folders.get(TOP_ROOM, '')}`), the command line, sits above them all"
        f" and imports: {', '.join(f'`{room}`' for room in sorted(imports.get(TOP_ROOM, ())))}."
        " An arrow that a longer path implies is not drawn; the table lists every import.",
        "",
        "| room | folder | imports |",
        "|---|---|---|",
    ]
    for room in sorted(imports):
        imported = ", ".join(f"`{other}`" for other in sorted(imports[room])) or "nothing"
        lines.append(f"| `feedrank.{room}` | `{folders.get(room, '')}` | {imported} |")
    lines += ["", END]
    return "\n".join(lines)


def replace_drawing(document: str, drawing: str) -> str:
    """``document`` with the text between the markers replaced by ``drawing``."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the doc has no drawing markers: add {BEGIN!r} and {END!r}")
    return document[:start] + drawing + document[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the doc's drawing is stale; write nothing"
    )
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown file to update")
    args = parser.parse_args(argv)
    imports = room_imports()
    drawing = render(imports, room_folders(imports))
    current = args.doc.read_text(encoding="utf-8")
    updated = replace_drawing(current, drawing)
    if args.check:
        if updated != current:
            print(
                f"{args.doc} draws rooms or imports the code no longer has:"
                " run 'make architecture' and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{args.doc}: the drawing of the rooms matches the code")
        return 0
    args.doc.write_text(updated, encoding="utf-8")
    print(f"{args.doc}: drew {len(imports)} rooms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
