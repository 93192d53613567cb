"""The one-shot GPU check's own plumbing (its steps run in `make bench-gpu`; a CPU dry run of the
whole script takes about a minute here, so only the parts are tested)."""
import os
import sys

import pytest

from engine.benchmarks.common import format_table

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import gpu_check  # noqa: E402


def test_reads_the_benchmark_tables():
    text = "noise\n" + format_table(["module", "HxW", "speed (ref/ours)", "max abs diff", "targets"],
                                    [["nonlocal", "56x56", "2.10x", "1.2e-06", "ok"], ["detr", "56x56", "0.9x", "0", "<2x"]],
                                    "title") + "\n\nmore noise\n" + format_table(["a", "b"], [["1", "2"]])
    (headers, rows), (headers2, rows2) = gpu_check.parse_tables(text)
    assert headers == ["module", "HxW", "speed (ref/ours)", "max abs diff", "targets"] and len(rows) == 2
    assert gpu_check.column(headers, rows[1], "targets") == "<2x"
    assert gpu_check.column(headers, rows[0], "max abs diff") == "1.2e-06"
    assert gpu_check.column(headers, rows[0], "absent") == "?"
    assert headers2 == ["a", "b"] and rows2 == [["1", "2"]]


def test_summary_written_with_every_step_skipped(tmp_path, capsys):
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--skip", "tests", "attention", "train-step", "mars", "loader"]) == 0
    summary = (out / "summary.txt").read_text()
    assert summary.splitlines()[1].split() == ["check", "result", "figures", "s"]
    assert "environment" in summary and summary.count("--skip") == 5
    assert os.listdir(out) == ["summary.txt"]


def test_needs_an_output_folder(monkeypatch):
    monkeypatch.delenv("GPU_CHECK_OUT", raising=False)
    with pytest.raises(SystemExit):
        gpu_check.main([])
