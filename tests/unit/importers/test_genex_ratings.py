"""The study's raw human-ratings CSV: wide headers to a long table; malformed files fail with the fix."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.importers.genex_ratings import RatingsError, parse_header, read_ratings

H_RATE = "{c}-model-{i} - {k}: The reasoning steps were clear. (1 = Very unclear, 5 = Very clear)"
H_BEST = 'best-overall-{i} - <span style="color:#2980b9;">{C} Model</span>'


def test_parse_header() -> None:
    assert parse_header(H_RATE.format(c="orange", i=185, k="Clarity of Steps")) == ("orange", "185", "Clarity of Steps")
    assert parse_header(H_BEST.format(i=71, C="Purple")) == ("purple", "71", "Best Overall")
    assert parse_header("Timestamp") is None


def _csv(tmp_path: Path, header: list[str], rows: list[list[str]]) -> Path:
    import csv

    p = tmp_path / "r.csv"
    with p.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return p


def test_synthetic_long_table_and_errors(tmp_path: Path) -> None:
    hdr = [
        H_RATE.format(c="orange", i=1, k="Confidence"),
        H_RATE.format(c="blue", i=1, k="Confidence"),
        H_BEST.format(i=1, C="Orange"),
        H_BEST.format(i=1, C="Blue"),
    ]
    long = read_ratings(_csv(tmp_path, hdr, [["4", "2", "1", "2"], ["", "", "", ""], ["5", "", "2", "1"]]))
    assert long.height == 7
    assert set(long["participant"]) == {"P1", "P3"}
    assert long.filter((pl.col("criterion") == "Best Overall") & (pl.col("source") == "DAPO"))["value"].to_list() == [
        2,
        1,
    ]
    with pytest.raises(RatingsError, match="column 1 header"):
        read_ratings(_csv(tmp_path, ["Timestamp"], [["x"]]))
    with pytest.raises(RatingsError, match="outside 1–5"):
        read_ratings(_csv(tmp_path, hdr[:1], [["7"]]))
    with pytest.raises(RatingsError, match="colour 'red'"):
        read_ratings(_csv(tmp_path, [H_RATE.format(c="red", i=1, k="Confidence")], [["3"]]))


def test_study_file_shape(study_data: Path) -> None:
    long = read_ratings(study_data / "genex-user-study" / "clean_data_all_rows.csv")
    assert long["participant"].n_unique() == 15
    assert long["item"].n_unique() == 10
    per = long.group_by("participant").agg(pl.col("item").n_unique())["item"].to_list()
    assert per == [5] * 15  # each participant rated 5 of the 10 items
    assert set(long["source"]) == {"OSS", "DAPO", "QwQ+DAPO/OSS", "QwQ+OSS/DAPO"}
    assert long.height == 15 * 5 * 16 - 1  # one blank cell
