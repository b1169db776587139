"""Weight files and run folders by their names and first bytes, without PyTorch.

What `stylize` needs before it knows which engine runs a file (an ONNX graph runs under ONNX Runtime with no
PyTorch import at all), and what `weights.py` builds on to load one.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError

WEIGHTS_NAME = "generator.safetensors"
DESCRIPTION_NAME = "generator.json"


def resolve_weights_file(path: str | Path) -> Path:
    """A run or export folder -> its `generator.safetensors`; a file -> itself. `InputError` if absent."""
    p = Path(path)
    if p.is_dir():
        f = p / WEIGHTS_NAME
        if not f.is_file():
            raise InputError(p, f"folder has no {WEIGHTS_NAME} (not a finished run or export)")
        return f
    if not p.is_file():
        raise InputError(p, "no such weights file or run folder")
    return p


def weights_fingerprint(path: str | Path) -> float:
    """Modification time of the weight file behind `path` (run folder or file), for resumability:
    a stylize run recorded with one fingerprint is stale when the weights change."""
    return resolve_weights_file(path).stat().st_mtime


def find_latest_run(runs_dir: Path = Path("runs"), kind: str = "image") -> Path | None:
    """The run folder under `runs_dir` whose `generator.safetensors` is newest among those of `kind`
    ("image": stylizers, "colorizer": Style2paints), or None."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    best: tuple[float, Path] | None = None
    for child in runs_dir.iterdir():
        f = child / WEIGHTS_NAME
        if child.is_dir() and f.is_file() and _folder_kind(child) == kind:
            t = f.stat().st_mtime
            if best is None or t > best[0]:
                best = (t, child)
    return None if best is None else best[1]


def _folder_kind(folder: Path) -> str:
    """What an export folder holds, from its generator.json (files from before colorizers: "image")."""
    try:
        # Every description written since colorizers exist names its kind; older ones are all stylizers.
        return str(json.loads((folder / DESCRIPTION_NAME).read_text()).get("kind") or "image")
    except (OSError, ValueError, AttributeError, TypeError):
        return "image"


def sniff_kind(path: Path) -> str:
    """What a weights file is, from its first bytes: zip (torch.save), pickle (legacy torch.save),
    safetensors, onnx, tflite, tensorflow (a frozen .pb graph), coreml, text or unknown. Lets a wrong file get a
    message that says what it is (AnimeGANv3 releases each model as .onnx, .pb, .tflite and .mlmodel)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return "unknown"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20):
        return "safetensors"
    if head[4:8] == b"TFL3":  # a FlatBuffer's file identifier, after its root offset
        return "tflite"
    if path.suffix.lower() in (".pb", ".pbtxt"):
        return "tensorflow"
    if path.suffix.lower() == ".mlmodel":
        return "coreml"
    # An ONNX ModelProto opens with field 1 (ir_version, a small varint) and then field 2 or later.
    if path.suffix.lower() == ".onnx" or (len(head) >= 3 and head[0] == 0x08 and head[1] < 0x20 and head[2] in (0x12, 0x1A, 0x22, 0x3A)):
        return "onnx"
    try:
        text = head.decode("utf-8")
        if text and all(c.isprintable() or c in "\r\n\t" for c in text):
            return "text"
    except UnicodeDecodeError:
        pass
    return "unknown"
