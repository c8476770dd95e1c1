"""The matrix with a fake backend: interrupt and resume, shards, journal, reports that agree."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from liteport.matrix.cells import Cell, parse_shard, shard
from liteport.matrix.journal import Journal, merge
from liteport.reports import build

MATRIX = [
    "--models",
    "zoo:tiny_cnn,zoo:lstm,zoo:attention_encoder",
    "--backends",
    "fake",
    "--modes",
    "fp32,int8",
    "--runtime",
    "local",
    "--jobs",
    "1",
]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "LITEPORT_DISABLE_PLUGINS": "numeric", **extra}


def _matrix(out: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liteport", "matrix", *MATRIX, "-o", str(out), *extra],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=600,
    )


def _results(journal: Path) -> dict[str, tuple[str, str]]:
    return {
        e["key"]: (e["attempt"]["status"], (e["attempt"].get("error") or {}).get("kind", ""))
        for e in merge([journal])
    }


@pytest.fixture
def full_run(fake_plugins: Path, cache_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "full"
    done = _matrix(out)
    assert done.returncode == 0, done.stderr
    return out


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until ``path`` exists (an event the process makes), failing at once if the process ends first."""
    deadline = time.monotonic() + 300  # only a guard against hanging forever, never the expected path
    while not path.exists():
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            pytest.fail(f"the matrix ended (exit {proc.returncode}) before {path.name} appeared: {stderr}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} never appeared")
        time.sleep(0.05)


def test_interrupted_matrix_resumes_without_redoing_a_cell(full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    journal = out / "journal.jsonl"
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "liteport", "matrix", *MATRIX, "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The 4th conversion waits at the gate: SIGINT arrives with exactly 3 cells journaled.
        env=_env(LITEPORT_FAKE_GATE=str(gate), LITEPORT_FAKE_BLOCK_AT="4"),
    )
    _wait_for(gate / "blocked", proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    before = journal.read_text().splitlines()
    assert len(before) == 3
    # The resume command stands on one line (never wrapped), so pasting it runs this matrix again.
    command = [line for line in stderr.splitlines() if line.startswith("liteport matrix")]
    assert len(command) == 1, stderr
    assert shlex.split(command[0]) == ["liteport", "matrix", *MATRIX, "-o", str(out), "--resume"]

    resumed = _matrix(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    after = journal.read_text().splitlines()
    keys = [json.loads(line)["key"] for line in after]
    assert len(keys) == len(set(keys)) == 6, "no cell was run twice"
    assert after[: len(before)] == before
    assert f"{6 - len(before)} cells run ({len(before)} already journaled)" in resumed.stderr
    assert _results(journal) == _results(full_run / "journal.jsonl")


def test_shards_merge_to_the_unsharded_report(full_run: Path, tmp_path: Path) -> None:
    for k in (1, 2):
        assert _matrix(tmp_path / f"shard{k}", "--shard", f"{k}/2").returncode == 0
    journals = [tmp_path / f"shard{k}" / "journal.jsonl" for k in (1, 2)]
    sizes = [len(j.read_text().splitlines()) for j in journals]
    assert sizes == [3, 3]
    merged = subprocess.run(
        [sys.executable, "-m", "liteport", "report", *map(str, journals), "-o", str(tmp_path / "merged")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert merged.returncode == 0, merged.stderr

    def essence(doc: dict[str, Any]) -> list[tuple[str, ...]]:
        return [
            (c["key"], c["model"], c["backend"], c["environment"], c["mode"], c["status"], c["cause"])
            for c in doc["cells"]
        ]

    whole = json.loads((full_run / "matrix.json").read_text())
    sharded = json.loads((tmp_path / "merged" / "matrix.json").read_text())
    assert essence(sharded) == essence(whole)
    assert sharded["summary"] == whole["summary"] == {"cells": 6, "by_status": {"ok": 3, "invalid": 3}}


def test_reports_agree_with_each_other(full_run: Path) -> None:
    doc = json.loads((full_run / "matrix.json").read_text())
    page = (full_run / "matrix.html").read_text()
    markdown = (full_run / "matrix.md").read_text()
    data = json.loads(
        re.search(r'<script type="application/json" id="cells-data">(.*?)</script>', page, re.S).group(1)
    )  # type: ignore[union-attr]
    assert [(c["key"], c["status"]) for c in data] == [(c["key"], c["status"]) for c in doc["cells"]]
    assert page.count('<td class="cell') == len(doc["cells"])  # "cell", "cell recommended", ...
    assert page.count('class="cell recommended') == sum(1 for r in _routes(doc) if r)
    for cell in doc["cells"]:
        if cell["cause"]:
            assert cell["cause"].replace("|", "\\|") in markdown
    assert (
        "6 cells" in markdown and '| <abbr title="zoo:lstm">lstm</abbr> |' in markdown
    )  # short name, full on hover


def test_existing_journal_needs_resume(full_run: Path) -> None:
    again = _matrix(full_run)
    assert again.returncode == 2
    assert "--resume" in again.stderr


def test_shards_are_deterministic_and_cover_everything() -> None:
    cells = [Cell(model=f"m{i}", backend="b", environment="e", mode="fp32", key=f"{i:04x}") for i in range(7)]
    parts = [shard(cells, k, 3) for k in (1, 2, 3)]
    assert sorted(c.key for p in parts for c in p) == sorted(c.key for c in cells)
    assert shard(list(reversed(cells)), 2, 3) == list(reversed(parts[1]))
    assert parse_shard("2/3") == (2, 3)


def test_journal_sets_a_torn_last_line_aside_before_appending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    entry = {
        "key": "k1",
        "cell": {"model": "m", "backend": "b", "environment": "e", "mode": "fp32"},
        "attempt": {"status": "ok"},
    }
    journal.append(entry)
    with open(journal.path, "a") as out:
        out.write('{"key": "k2", "cell"')  # killed while writing
    assert journal.keys() == {"k1"}
    assert build(merge([journal.path]))["summary"] == {"cells": 1, "by_status": {"ok": 1}}
    # A resumed run opens the journal again: the fragment goes to a side file, never under the next entry.
    again = Journal(journal.path)
    again.append({**entry, "key": "k3"})
    assert again.keys() == {"k1", "k3"}
    assert all(json.loads(line) for line in journal.path.read_text().splitlines())
    side = tmp_path / "j.jsonl.torn"
    assert '{"key": "k2", "cell"' in side.read_text()
    warning = capsys.readouterr().err
    assert "torn" in warning and str(side) in warning


def test_resume_after_a_torn_journal_line_loses_nothing(full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "torn"
    out.mkdir()
    lines = (full_run / "journal.jsonl").read_text().splitlines(keepends=True)
    fragment = lines[3][: len(lines[3]) // 2]
    (out / "journal.jsonl").write_text("".join(lines[:3]) + fragment)  # power cut in the 4th write
    resumed = _matrix(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "3 cells run (3 already journaled)" in resumed.stderr
    side = out / "journal.jsonl.torn"
    assert fragment in side.read_text()
    assert [line for line in resumed.stderr.splitlines() if "torn" in line and str(side) in line]
    assert (out / "journal.jsonl").read_text().splitlines(keepends=True)[:3] == lines[:3]
    assert _results(out / "journal.jsonl") == _results(full_run / "journal.jsonl")
    assert json.loads((out / "matrix.json").read_text())["summary"]["cells"] == 6
    again = _matrix(out, "--resume")  # and the next resume finds nothing left to do
    assert again.returncode == 0 and "0 cells run (6 already journaled)" in again.stderr, again.stderr


def test_report_reads_past_a_torn_final_line_with_a_warning(full_run: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text((full_run / "journal.jsonl").read_text() + '{"key": "k2", "cell"')
    merged = subprocess.run(
        [sys.executable, "-m", "liteport", "report", str(journal), "-o", str(tmp_path / "merged")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert merged.returncode == 0, merged.stderr
    warnings = [line for line in merged.stderr.splitlines() if line.startswith("liteport: warning:")]
    assert len(warnings) == 1 and str(journal) in warnings[0] and "line 7" in warnings[0], merged.stderr
    assert json.loads((tmp_path / "merged" / "matrix.json").read_text())["summary"]["cells"] == 6


def _routes(doc: dict[str, Any]) -> list[Any]:
    return [route for per_mode in doc["recommended"]["routes"].values() for route in per_mode.values()]
