"""``crosscot bench <name>``: runs one section into <out>/<name>/ and BENCH.md; unknown names are a user error."""

from __future__ import annotations

from pipeline.cli import main


def test_bench_plan_section_writes_bench_md(tmp_path):
    assert main(["bench", "plan", "--out", str(tmp_path)]) == 0
    bench = (tmp_path / "BENCH.md").read_text()
    assert "## plan" in bench and "FAILED" not in bench
    assert (tmp_path / "plan" / "plan.md").read_text().strip()


def test_unknown_bench_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crosscot: error: unknown bench 'nope'")
    assert not (tmp_path / "BENCH.md").exists()
