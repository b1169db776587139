"""The dataset manifest: validation, path safety, schema versions, migrations, locking, atomicity."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from pipelines.data import manifest as mf
from pipelines.errors import DatasetError
from pipelines.data.manifest import Dataset, DerivedSource, FrameSource, ImportedSource, Record, make_record, parse_manifest

HASH = "ab" * 32


def _record(path: str = "style/a.png", **over) -> dict:
    rec = {
        "path": path,
        "width": 64,
        "height": 48,
        "bytes": 10,
        "sha256": HASH,
        "source": {"kind": "imported", "original": "/x/a.png"},
    }
    rec.update(over)
    return rec


def _manifest_bytes(records: list[dict], set_name: str = "style", **top) -> bytes:
    raw = {"schema_version": 1, "created": "t", "updated": "t", "sets": {set_name: records}, "extractions": {}}
    raw.update(top)
    return json.dumps(raw).encode()


def _error(data: bytes, where: Path = Path("/ds/manifest.json")) -> str:
    with pytest.raises(DatasetError) as exc:
        parse_manifest(data, where)
    return str(exc.value)


def test_round_trip_keeps_every_field(tmp_path: Path):
    ds = Dataset.open(tmp_path / "ds", create=True)
    frame = FrameSource(film="/films/a.mp4", film_sha256="cd" * 32, time=1.25, frame_index=30)
    derived = DerivedSource(operation="smooth", source="style/f/0001.jpg", source_sha256=HASH, params={"size": None, "format": ".png"})
    with ds.transaction() as m:
        m.put("style", make_record("style/f/0001.jpg", b"abc", 32, 16, frame))
        m.put("smooth", make_record("smooth/f/0001.png", b"defg", 32, 16, derived))
        m.put("photo", make_record("photo/p.jpg", b"", 8, 8, ImportedSource(original="/home/u/p.jpg")))
        m.extractions["k"] = mf.ExtractionState(film="/films/a.mp4", options={"fps": 2}, done_until=3.5, kept=7)
    again = Dataset(tmp_path / "ds").manifest
    assert again.model_dump() == ds.manifest.model_dump()
    assert again.find("style", "style/f/0001.jpg").source == frame
    assert again.find("smooth", "smooth/f/0001.png").source.params == {"size": None, "format": ".png"}
    assert again.find("smooth", "smooth/f/0001.png").bytes == 4
    assert again.extractions["k"].done_until == 3.5
    # Re-serializing what was read gives the same bytes apart from the timestamp.
    with ds.transaction():
        pass
    assert Dataset(tmp_path / "ds").manifest.sets == again.sets


def test_open_without_manifest_names_the_file(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"manifest\.json: no dataset here"):
        Dataset.open(tmp_path)


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        (_record(width=0), "sets.style.0.width", "greater than 0"),
        (_record(width="wide"), "sets.style.0.width", "integer"),
        (_record(sha256="xyz"), "sets.style.0.sha256", "64 lower-case hex"),
        (_record(sha256=HASH.upper()), "sets.style.0.sha256", "64 lower-case hex"),
        (_record(colour="red"), "sets.style.0.colour", "Extra inputs"),
        (_record(source={"kind": "frame", "film": "/f.mp4", "time": -1, "frame_index": 0}), "sets.style.0.source.frame.time", "greater than or equal to 0"),
        (_record(source={"kind": "magic"}), "sets.style.0.source", "tag"),
    ],
)
def test_validation_errors_name_the_file_and_the_field(record, field, words):
    msg = _error(_manifest_bytes([record]))
    assert msg.startswith("/ds/manifest.json: ")
    assert f": {field}: " in msg
    assert words in msg
    assert "\n" not in msg


def test_duplicate_path_in_a_set_is_refused():
    msg = _error(_manifest_bytes([_record("style/a.png"), _record("style/a.png")]))
    assert "/ds/manifest.json: sets: " in msg and "'style/a.png' twice" in msg


def test_unknown_top_level_field_and_bad_set_name():
    assert "Extra inputs" in _error(_manifest_bytes([], surprise=1))
    assert "set name 'Style'" in _error(_manifest_bytes([], set_name="Style"))


def test_not_json_and_not_an_object():
    assert "not valid JSON" in _error(b"{oops")
    assert "top level must be a JSON object" in _error(b"[1, 2]")


@pytest.mark.parametrize("bad", ["../x.png", "style/../../x.png", "/abs/x.png", "a//b.png", "style\\a.png", "./a.png", "C:/x.png", ""])
def test_path_traversal_refused(bad: str):
    msg = _error(_manifest_bytes([_record(bad)]))
    assert "sets.style.0.path" in msg
    with pytest.raises(ValueError):
        mf.check_relpath(bad)
    # Derived records point at another record: the same rule applies to that pointer.
    derived = {"kind": "derived", "operation": "smooth", "source": bad, "source_sha256": HASH}
    assert "source.derived.source" in _error(_manifest_bytes([_record("smooth/a.png", source=derived)], set_name="smooth"))


def test_abspath_refuses_traversal(tmp_path: Path):
    ds = Dataset(tmp_path)
    assert ds.abspath("style/a/b.png") == tmp_path / "style" / "a" / "b.png"
    with pytest.raises(ValueError):
        ds.abspath("../outside.png")


def test_newer_schema_version_refused_with_clear_message():
    msg = _error(_manifest_bytes([], schema_version=mf.SCHEMA_VERSION + 1))
    assert f"schema_version {mf.SCHEMA_VERSION + 1} is newer" in msg and "upgrade animegan" in msg
    assert "schema_version: missing" in _error(json.dumps({"sets": {}}).encode())


def test_migration_from_an_older_version_is_applied(monkeypatch, tmp_path: Path):
    # Pretend version 0 stored records under "images" with "w"/"h" and no set folders.
    def v0_to_v1(raw: dict) -> dict:
        sets = {}
        for name, recs in raw.pop("images").items():
            sets[name] = [dict(r, width=r.pop("w"), height=r.pop("h")) for r in recs]
        return dict(raw, sets=sets, schema_version=1)

    monkeypatch.setitem(mf.MIGRATIONS, 0, v0_to_v1)
    old = _record()
    old["w"], old["h"] = old.pop("width"), old.pop("height")
    raw = {"schema_version": 0, "created": "t", "updated": "t", "images": {"style": [old]}}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    ds = Dataset.open(tmp_path)
    rec = ds.manifest.find("style", "style/a.png")
    assert (rec.width, rec.height) == (64, 48)
    # The next write stores the current version.
    with ds.transaction():
        pass
    assert json.loads((tmp_path / "manifest.json").read_text())["schema_version"] == mf.SCHEMA_VERSION


def test_version_without_migration_is_refused(monkeypatch):
    monkeypatch.setattr(mf, "MIGRATIONS", {})
    assert "cannot be migrated" in _error(_manifest_bytes([], schema_version=0))


def test_failed_transaction_writes_nothing(tmp_path: Path):
    ds = Dataset.open(tmp_path, create=True)
    with ds.transaction() as m:
        m.put("style", Record.model_validate(_record()))
    before = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError):
        with ds.transaction() as m:
            m.put("style", Record.model_validate(_record("style/b.png")))
            m.remove("style", "style/a.png")
            raise RuntimeError("boom")
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert [r.path for r in Dataset(tmp_path).manifest.records("style")] == ["style/a.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp.json")] == []


def test_transaction_that_would_store_an_invalid_manifest_writes_nothing(tmp_path: Path):
    ds = Dataset.open(tmp_path, create=True)
    before = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(DatasetError, match="twice"):
        with ds.transaction() as m:
            # Bypass put()'s replace-by-path to create a duplicate: the pre-write validation catches it.
            m.sets["style"] = [Record.model_validate(_record()), Record.model_validate(_record())]
    assert (tmp_path / "manifest.json").read_bytes() == before


def _writer(root: str, tag: str, n: int) -> None:
    ds = Dataset(root)
    for i in range(n):
        with ds.transaction() as m:
            m.put("style", Record.model_validate(_record(f"style/{tag}/{i:03d}.png")))


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    Dataset.open(tmp_path, create=True)
    n = 25
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, n)) for tag in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    m = Dataset(tmp_path).manifest  # parses and validates the final file
    paths = {r.path for r in m.records("style")}
    assert paths == {f"style/{t}/{i:03d}.png" for t in ("a", "b", "c") for i in range(n)}


def test_put_replaces_and_remove(tmp_path: Path):
    ds = Dataset.open(tmp_path, create=True)
    with ds.transaction() as m:
        m.put("style", Record.model_validate(_record(width=10)))
        m.put("style", Record.model_validate(_record(width=20)))
        assert [r.width for r in m.records("style")] == [20]
        assert m.remove("style", "style/a.png") and not m.remove("style", "style/a.png")
        with pytest.raises(DatasetError, match="invalid set name"):
            m.put("Bad Set", Record.model_validate(_record()))


def test_broken_migration_step_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(mf.MIGRATIONS, 0, lambda raw: raw)  # forgets to bump the version
    assert "did not advance" in _error(_manifest_bytes([], schema_version=0))
    monkeypatch.setitem(mf.MIGRATIONS, 0, lambda raw: raw["images"])  # old data lacks what it expects
    assert "cannot migrate from schema_version 0 (KeyError" in _error(_manifest_bytes([], schema_version=0))
