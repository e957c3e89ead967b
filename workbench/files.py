"""Reading the user's files (recipes, data, DeepSpeed configs) with errors that name the file and the byte.

    from workbench.files import read_text
    text = read_text(Path("recipes/mine.yaml"), "recipes/mine.yaml")
"""

from pathlib import Path

from workbench.errors import WorkbenchError


def read_text(path: Path, label: str | None = None) -> str:
    """A file's text as UTF-8 (a byte-order mark is allowed); anything else is one line naming the byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkbenchError(f"{label or path}: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WorkbenchError(f"{label or path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                             "(save the file as UTF-8)") from None
