"""Special files where regular ones belong (issue 23): a FIFO, a device, a /proc file, an absurd number. Each is one
line naming the file, at once (nothing hangs), and the regular files beside it are still processed."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.fileio import encode_image, read_regular_file
from tests.conftest import build_tiny_dataset, skimage_photo

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def _within(seconds: float, fn):
    """Run `fn` in a thread; fail (instead of hanging the suite) when it does not return in time."""
    result: dict = {}

    def call() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            result["error"] = exc

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: a special file made the command wait"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_read_regular_file_refuses_what_is_not_one(tmp_path: Path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="a FIFO, not a regular file"):
        _within(10, lambda: read_regular_file(fifo))
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(OSError, match="a character device"):
        read_regular_file(tmp_path / "zero.png")
    if Path("/proc/self/mem").exists():
        with pytest.raises(OSError):
            read_regular_file("/proc/self/mem")
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(OSError, match="larger than"):
        read_regular_file(big, max_bytes=1024)
    assert read_regular_file(big) == b"\0" * 2048


def test_manifest_as_fifo_device_or_huge_number_is_one_line(tmp_path: Path):
    ds = build_tiny_dataset(tmp_path / "ds", size=48, with_smooth=False)
    manifest = ds.root / "manifest.json"
    good = manifest.read_bytes()
    manifest.unlink()
    os.mkfifo(manifest)
    res = _within(30, lambda: CliRunner().invoke(app, ["dataset", str(ds.root)]))
    assert res.exit_code != 0 and len(_lines(res.output)) == 1 and "FIFO" in res.output, res.output
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    res = CliRunner().invoke(app, ["dataset", str(ds.root)])
    assert res.exit_code != 0 and len(_lines(res.output)) == 1 and "character device" in res.output, res.output
    manifest.unlink()
    huge = re.sub(r'"schema_version":\s*\d+', '"schema_version": ' + "9" * 5000, good.decode(), count=1)
    assert huge != good.decode()
    manifest.write_text(huge)  # past Python's 4300-digit limit for int()
    res = CliRunner().invoke(app, ["dataset", str(ds.root)])
    assert res.exit_code != 0 and len(_lines(res.output)) == 1 and "manifest.json" in res.output, res.output


def test_add_images_skips_special_files_and_imports_the_rest(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.png").write_bytes(encode_image(skimage_photo("coffee", 40), ".png"))
    os.mkfifo(src / "pipe.png")
    (src / "zero.jpg").symlink_to("/dev/zero")
    res = _within(60, lambda: CliRunner().invoke(app, ["add-images", str(src), "--dataset", str(tmp_path / "ds"),
                                                       "--set", "photo", "--new-set"]))
    assert res.exit_code == 0, res.output  # listed folders hold files: special entries are passed over, as hidden ones
    assert [p.suffix for p in (tmp_path / "ds" / "photo").iterdir() if not p.name.startswith(".")] == [".png"]
    for name in ("pipe.png", "zero.jpg"):  # named one by one, each is one line
        res = _within(60, lambda: CliRunner().invoke(app, ["add-images", str(src / name), "--dataset",
                                                           str(tmp_path / "ds"), "--set", "photo"]))
        assert res.exit_code != 0 and name in res.output and "not a regular file" in res.output, res.output
        assert all(len(line) < 400 for line in _lines(res.output)) and "Traceback" not in res.output
