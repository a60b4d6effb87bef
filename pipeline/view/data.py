"""The viewer's data layer: a run's Arrow files as items, filters, pages and item details.

An *item* is one cell row of the tables' matrices: ``(setting, variant, dataset, problem_id,
sample)`` — for ``Transfer <S>`` exactly one source CoT answered by every target, for Empty /
Default / Sampled every target after its own CoT.  Counts therefore equal the tables': the
agreement flags behind a filter are the tables' rule computed as joins (:mod:`pipeline.view.flags`,
tested equal to :func:`pipeline.scoring.consistency.pair_flags`, the code the tables come from),
built per metric on first use and cached.

``scored.arrow`` is read once (memory-mapped) into Polars; a page joins only its own rows with
the answers, so the first page and a filter change stay well under a second on 200,000 answer
rows (``crosscot bench view``).  A still-running run (no ``scored.arrow`` yet) is judged on the
fly from the answers streamed so far (:mod:`pipeline.view.live`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import polars as pl

from pipeline.errors import UserError
from pipeline.scoring.consistency import order_models, with_setting

ITEM = ("setting", "variant", "dataset", "problem_id", "sample")
PROBLEM = ("dataset", "problem_id", "sample")
SOURCE = "source"  # the pseudo-target "the source model's own answer" in a pair
HEAVY = ("cot", "answer_text")  # columns read only for an item page
SORTS = ("setting", "variant", "dataset", "problem_id", "n_correct", "n_targets", "leak")


def item_key(row: dict) -> str:
    """The URL form of an item: its ITEM columns joined by ``|`` (``|`` never occurs in names)."""
    return "|".join(str(row[c]) for c in ITEM)


def parse_key(key: str) -> dict:
    parts = key.split("|")
    if len(parts) != len(ITEM):
        raise KeyError(key)
    out = dict(zip(ITEM, parts))
    out["sample"] = int(out["sample"])
    return out


@dataclass
class Filters:
    """What the Items page asks for (every field optional; see :meth:`RunData.items`)."""

    dataset: Optional[str] = None
    setting: Optional[str] = None
    method: Optional[str] = None
    variant: Optional[str] = None
    source: Optional[str] = None
    target: Optional[str] = None
    correct: Optional[str] = None  # "correct" | "incorrect"
    agree: Optional[str] = None  # "agree" | "disagree"
    pair: Optional[str] = None  # "A|B" (B may be "source": the source's own answer)
    metric: str = "paper"
    leak: Optional[str] = None  # "yes" | "no"
    flip_from: Optional[str] = None  # a setting: items whose agreement/correctness differs from it
    sort: str = "problem_id"
    desc: bool = False
    page: int = 1
    per_page: int = 50
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_query(cls, q: dict[str, str]) -> "Filters":
        f = cls()
        for k, v in q.items():
            if v in ("", None):
                continue
            if k in ("page", "per_page"):
                setattr(f, k, max(1, min(int(v), 1000 if k == "per_page" else 10**9)))
            elif k == "desc":
                f.desc = v in ("1", "true", "yes")
            elif k in cls.__dataclass_fields__ and k != "extra":
                setattr(f, k, v)
        if f.sort not in SORTS:
            f.sort = "problem_id"
        return f


class RunData:
    """One run's answers, items and tables, read lazily and cached (thread-safe)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir).resolve()
        if not self.run_dir.is_dir():
            raise UserError(
                f"view: {run_dir} is not a directory; pass a run directory (holding scored.arrow or store/)"
            )
        self._lock = threading.RLock()
        self._flags: dict[str, pl.DataFrame] = {}
        self._stamp: Any = None
        self.reload_if_changed()

    # ------------------------------------------------------------------ loading
    def _source_stamp(self) -> Any:
        p = self.run_dir / "scored.arrow"
        if p.is_file():
            st = p.stat()
            return ("scored", st.st_mtime_ns, st.st_size)
        from pipeline.view.live import live_stamp

        return ("live", live_stamp(self.run_dir))

    def reload_if_changed(self) -> None:
        """Read the run again when its files changed (a running run grows)."""
        stamp = self._source_stamp()
        with self._lock:
            if stamp == self._stamp:
                return
            p = self.run_dir / "scored.arrow"
            if p.is_file():
                # The long texts (CoTs, replies) stay on disk until an item page asks for them.
                names = pl.scan_ipc(p).collect_schema().names()
                scored = pl.scan_ipc(p).select([c for c in names if c not in HEAVY]).collect()
                self.live = False
            else:
                from pipeline.view.live import live_scored

                scored = live_scored(self.run_dir)
                self.live = True
            self._full = None if p.is_file() else scored
            self.scored = (
                with_setting(scored) if scored.height else scored.with_columns(pl.lit(None, pl.String).alias("setting"))
            )
            self.cots = self._read_store(
                "truncate-", ("dataset", "problem_id", "method", "source", "variant", "sample")
            )
            self.problems = self._read_store("problems-", ("dataset", "problem_id"))
            self.candidates = self._read_candidates()
            self.index = self._build_index()
            # One integer id per item: every filter joins on it instead of five string columns.
            iid = np.zeros(self.scored.height, dtype=np.uint32)
            if self.index.height:
                m = self.index.select("iid", "_r").explode("_r")
                iid[m["_r"].to_numpy()] = m["iid"].to_numpy()
            self.index = self.index.drop("_r", strict=False)
            self.scored = self.scored.with_columns(pl.Series("iid", iid, dtype=pl.UInt32))
            self.targets = order_models(self.scored["target"].unique().to_list()) if self.scored.height else []
            self._flags = {}
            self._stamp = stamp

    def full_rows(self, where: pl.Expr) -> pl.DataFrame:
        """The rows of ``scored`` matching ``where`` with every column (CoT and reply texts included)."""
        if self._full is not None:
            return with_setting(self._full.filter(where)) if self._full.height else self.scored
        rows = pl.scan_ipc(self.run_dir / "scored.arrow").filter(where).collect()
        return with_setting(rows) if rows.height else rows.with_columns(pl.lit(None, pl.String).alias("setting"))

    def _read_store(self, prefix: str, key: tuple[str, ...]) -> pl.DataFrame:
        from pipeline.view.live import read_frames, store_files

        frames = read_frames(store_files(self.run_dir, prefix))
        if not frames:
            return pl.DataFrame()
        if len(frames) == 1:  # one artifact holds one row per key already
            return frames[0]
        return pl.concat(frames, how="diagonal_relaxed").unique(subset=list(key), keep="last")

    def _read_candidates(self) -> pl.DataFrame:
        p = self.run_dir / "ensemble_candidates.arrow"
        if p.is_file():
            return pl.read_ipc(p)
        return self._read_store(
            "ensemble_candidates-", ("dataset", "problem_id", "source", "step", "generator", "candidate")
        )

    def _build_index(self) -> pl.DataFrame:
        s = self.scored.with_row_index("_r")
        if s.height == 0:
            return pl.DataFrame(schema={c: pl.String for c in ITEM} | {"sample": pl.Int32, "iid": pl.UInt32})
        leak = pl.lit(None, pl.Boolean)
        if self.cots.height and "leak" in self.cots.columns:
            c = self.cots.select(
                "dataset",
                "problem_id",
                pl.col("method").alias("cot_method"),
                "source",
                "variant",
                "sample",
                pl.col("leak").alias("cot_leak"),
            )
            s = s.with_columns(
                pl.when(pl.col("method") == "transfer")
                .then(pl.lit("default"))
                .otherwise(pl.col("method"))
                .alias("cot_method")
            )
            s = s.join(c, on=["dataset", "problem_id", "cot_method", "source", "variant", "sample"], how="left")
            leak = pl.col("cot_leak").any()
        own = pl.col("method").is_in(["empty", "default", "sampled"])
        return (
            s.group_by(list(ITEM))
            .agg(
                pl.col("method").first(),
                pl.when(own).then(pl.lit("(own)")).otherwise(pl.col("source")).first().alias("source"),
                pl.len().alias("n_targets"),
                pl.col("correct").fill_null(False).sum().alias("n_correct"),
                leak.alias("leak"),
                pl.col("gold").first(),
                pl.col("_r"),
            )
            .with_columns(pl.col("n_correct").cast(pl.Int64), pl.col("n_targets").cast(pl.Int64))
            .sort(list(ITEM))
            .with_row_index("iid")
        )

    # ------------------------------------------------------------------ agreement flags
    def _flags_for(self, idx: pl.DataFrame, metric: str) -> pl.DataFrame:
        """``iid, a, b, agree, valid`` of every item and pair (:func:`pipeline.view.flags.fast_flags`), cached."""
        from pipeline.view.flags import FAST, fast_flags

        if metric not in FAST:
            raise ValueError(f"metric {metric!r} has no agree/disagree filter; use one of {', '.join(FAST)}")
        with self._lock:
            if metric not in self._flags:
                self._flags[metric] = fast_flags(self.scored, metric)
            return self._flags[metric]

    def _agree_values(self, idx: pl.DataFrame, f: Filters) -> pl.DataFrame:
        """Per item (ITEM columns): ``value`` True (agree) / False (disagree); items without a valid pair are absent."""
        fl = self._flags_for(idx, f.metric).filter(pl.col("valid"))
        if f.pair:
            a, _, b = f.pair.partition("|")
            if b == SOURCE:
                fl = fl.filter((pl.col("a") == a) & (pl.col("b") == SOURCE))
            else:
                fl = fl.filter(((pl.col("a") == a) & (pl.col("b") == b)) | ((pl.col("a") == b) & (pl.col("b") == a)))
        else:
            fl = fl.filter(pl.col("b") != SOURCE)
        fl = fl.join(idx.select("iid"), on="iid", how="semi")
        return fl.group_by("iid").agg(pl.col("agree").all().alias("value"))

    def _correct_values(self, idx: pl.DataFrame, target: Optional[str]) -> pl.DataFrame:
        """Per item of ``idx``: ``value`` = ``target`` correct (absent: no row), or every target correct."""
        s = self.scored.select("iid", "target", pl.col("correct").fill_null(False))
        s = s.join(idx.select("iid"), on="iid", how="semi")
        if target:
            return s.filter(pl.col("target") == target).select("iid", pl.col("correct").alias("value"))
        return s.group_by("iid").agg(pl.col("correct").all().alias("value"))

    # ------------------------------------------------------------------ queries
    def filtered(self, f: Filters) -> pl.DataFrame:
        """The index rows matching ``f`` (unsorted, all pages)."""
        self.reload_if_changed()
        idx = self.index
        for col in ("dataset", "setting", "method", "variant", "source"):
            v = getattr(f, col)
            if v:
                idx = idx.filter(pl.col(col) == v)
        if f.flip_from and f.setting:
            idx = self._flips(idx, f)
        if f.target:
            has = self.scored.filter(pl.col("target") == f.target).select("iid")
            idx = idx.join(has, on="iid", how="semi")
        if f.leak in ("yes", "no"):
            idx = idx.filter(pl.col("leak").fill_null(False) == (f.leak == "yes"))
        if f.correct in ("correct", "incorrect"):
            vals = self._correct_values(idx, f.target).filter(pl.col("value") == (f.correct == "correct"))
            idx = idx.join(vals.select("iid"), on="iid", how="semi")
        if f.agree in ("agree", "disagree"):
            vals = self._agree_values(idx, f).filter(pl.col("value") == (f.agree == "agree"))
            idx = idx.join(vals.select("iid"), on="iid", how="semi")
        return idx

    def _flips(self, idx: pl.DataFrame, f: Filters) -> pl.DataFrame:
        """Items of ``f.setting`` whose agreement (``f.pair``/all pairs) or, with ``f.target`` and no
        ``f.agree``-style pair, correctness differs from the same problem and variant under ``f.flip_from``."""
        other = self.index.filter(pl.col("setting") == f.flip_from)
        if f.variant:
            other = other.filter(pl.col("variant") == f.variant)
        if f.pair or not f.target:
            here, there = self._agree_values(idx, f), self._agree_values(other, f)
        else:
            here, there = self._correct_values(idx, f.target), self._correct_values(other, f.target)
        on = ["variant", *PROBLEM]
        here = here.join(idx.select("iid", *on), on="iid")
        there = there.join(other.select("iid", *on), on="iid").select(*on, pl.col("value").alias("value_from"))
        j = here.join(there, on=on, how="inner").filter(pl.col("value") != pl.col("value_from"))
        return idx.join(j.select("iid", "value", "value_from"), on="iid", how="inner")

    def items(self, f: Filters) -> dict:
        """One page: ``total``, ``page``, ``pages``, ``targets`` and ``rows`` (with every target's answer)."""
        idx = self.filtered(f)
        total = idx.height
        order = [f.sort] + [c for c in ("setting", "variant", "dataset", "problem_id", "sample") if c != f.sort]
        page = idx.sort(order, descending=[f.desc] + [False] * (len(order) - 1), nulls_last=True).slice(
            (f.page - 1) * f.per_page, f.per_page
        )
        ans = self.scored.join(page.select("iid"), on="iid", how="semi").select(
            *ITEM, "target", "source", "extracted", "correct", "error"
        )
        by_item: dict[str, dict] = {}
        for r in ans.iter_rows(named=True):
            by_item.setdefault(item_key(r), {})[r["target"]] = {
                "extracted": r["extracted"],
                "correct": r["correct"],
                "error": r["error"] is not None,
            }
        rows = []
        for r in page.iter_rows(named=True):
            k = item_key(r)
            rows.append(
                {
                    **{c: r[c] for c in ITEM},
                    "key": k,
                    "method": r["method"],
                    "source": r["source"],
                    "leak": r["leak"],
                    "n_correct": r["n_correct"],
                    "n_targets": r["n_targets"],
                    "gold": _gold(r["gold"]),
                    "answers": by_item.get(k, {}),
                    **({"flip": [r["value_from"], r["value"]]} if "value" in r else {}),
                }
            )
        return {
            "total": total,
            "page": f.page,
            "per_page": f.per_page,
            "pages": max(1, -(-total // f.per_page)),
            "targets": self.targets,
            "rows": rows,
            "live": self.live,
        }

    def facets(self) -> dict:
        """The values each filter can take (for the Items page's selects)."""
        self.reload_if_changed()
        idx = self.index

        def vals(c: str) -> list:
            return sorted(v for v in idx[c].unique().to_list() if v is not None) if idx.height else []

        return {
            "dataset": vals("dataset"),
            "setting": vals("setting"),
            "method": vals("method"),
            "variant": vals("variant"),
            "source": vals("source"),
            "target": self.targets,
            "metric": self.metrics(),
            "live": self.live,
            "run": self.run_dir.name,
        }

    def metrics(self) -> list[str]:
        """The run's agreement metrics the filters support (continuous ones have no agree/disagree)."""
        from pipeline.view.flags import FAST

        t = self.tables().get("consistency_summary")
        have = set(t["metric"].unique().to_list()) if t is not None and t.height else set(FAST)
        return [m for m in FAST if m in have] or list(FAST)

    def tables(self) -> dict[str, pl.DataFrame]:
        from pipeline.view.overview import read_tables

        return read_tables(self.run_dir)

    def item(self, key: str) -> dict:
        from pipeline.view.item import item_detail

        self.reload_if_changed()
        return item_detail(self, parse_key(key))


def _gold(g: Optional[str]) -> Any:
    try:
        d = json.loads(g) if g else None
    except ValueError:
        return g
    return d.get("answer", d) if isinstance(d, dict) else d
