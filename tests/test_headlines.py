"""committed_headline: a notebook's Summary shows what the committed full run of its study found."""

from __future__ import annotations

import json

from umlip_helpers.book.headlines import committed_headline
from umlip_helpers.paths import results_path


def test_a_headline_keyed_by_model_becomes_one_column_per_model(tmp_path, capsys):
    record = {"parameters": {"profile": "full"}, "created_utc": "2026-12-04T10:00:00+00:00", "cpu": "a CPU",
              "argv": ["python", "benchmarks/study.py", "--profile", "full"]}
    headline = {"model-a": {"ratio": 0.83257640, "atoms": 500}, "model-b": {"ratio": 1.4, "atoms": 10976}}
    (tmp_path / "study.json").write_text(json.dumps({"headline": headline, "provenance": record}))
    table = committed_headline("study", tmp_path)
    printed = capsys.readouterr().out
    assert "profile full, 2026-12-04" in printed and "python benchmarks/study.py --profile full" in printed
    assert list(table.columns) == ["model-a", "model-b"]
    assert table.loc["ratio", "model-a"] == 0.833 and table.loc["atoms", "model-b"] == 10976


def test_a_flat_headline_and_a_missing_study(tmp_path, capsys):
    (tmp_path / "flat.json").write_text(json.dumps({"headline": {"speedup": {"x": 2.0}, "n": 3}}))
    table = committed_headline("flat", tmp_path)
    assert table.loc["speedup.x", "value"] == 2.0 and table.loc["n", "value"] == 3
    assert committed_headline("never_run", tmp_path) is None
    assert "benchmarks/results/never_run.json is not committed yet" in capsys.readouterr().out


def test_the_default_folder_is_the_checkouts_results():
    assert (results_path() / "foundation_errors.json").is_file()


def test_a_result_without_a_headline_key_shows_its_key_numbers(capsys):
    """finetune_ymno3.json has no ``headline``: the Summary shows the numbers the Results page leads with."""
    table = committed_headline("finetune_ymno3")
    assert table is not None and len(table) > 0
    assert "made by: " in capsys.readouterr().out


def test_a_scratch_folder_in_the_command_line_shows_without_its_machine_path(tmp_path, capsys):
    record = {"parameters": {"profile": "small"}, "argv": ["python", "benchmarks/study.py", "--workdir", "/tmp/ftn/cmp"]}
    (tmp_path / "study.json").write_text(json.dumps({"headline": {"x": 1.0}, "provenance": record}))
    committed_headline("study", tmp_path)
    printed = capsys.readouterr().out
    assert "made by: python benchmarks/study.py --workdir …/cmp" in printed and "/tmp/" not in printed
