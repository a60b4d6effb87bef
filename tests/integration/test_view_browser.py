"""`crosscot view` in a real headless Chromium (Debian's `chromium`, driven by Playwright) on a real run.

One small demo_tiny run (real vLLM engines in Ray actors, a partial-CoT variant included) is made
once for the module; one reply in its scored.arrow is replaced by a `<script>` payload.  The
tests open the served viewer and the static export, filter to disagreements and compare the count
with tables/consistency_pairs.csv, open an item and find its CoT and every target's answer, follow
a flip between two settings, and check that the payload shows as text and never runs.  A missing
browser is a FAILURE (never a skip): `make test` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from urllib.parse import parse_qsl, urlencode

import polars as pl
import pytest

from pipeline.schema import setting_name
from pipeline.scoring.consistency import build_matrix, pair_flags, with_setting
from pipeline.store.artifacts import read_table, write_table

pytestmark = pytest.mark.slow  # one real demo_tiny run (engines in Ray actors) for the module

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = "<script>window.__pwned = 1</script><b>bold?</b>"
SCREENSHOT = REPO / "docs" / "view.png"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("view") / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "experiment=demo_tiny",
            f"run_dir={d}",
            "dataset.size=8",
            "generate.thought_budget=40",
            "generate.answer_budget=10",
            "transfer.answer_budget=10",
            "truncate.prefix_fractions=[0.5]",
            "transfer.variants=[full,without_answer,prefix_0.5]",
            "progress=false",
            "score.n_boot=50",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    t = read_table(d / "scored.arrow")
    texts = t.column("answer_text").to_pylist()
    texts[0] = PAYLOAD  # the first row: Default (own CoT) of the first problem
    meta = t.schema.metadata
    t = t.set_column(t.schema.get_field_index("answer_text"), "answer_text", [texts]).replace_schema_metadata(meta)
    write_table(d / "scored.arrow", t)
    return d


@pytest.fixture(scope="module")
def browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(
            "chromium is not installed: `apt-get install -y chromium` (make test installs it); "
            "the viewer's browser tests fail, they do not skip",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def viewer(run_dir):
    from pipeline.view.server import Viewer

    v = Viewer(run_dir).start()
    assert v.url.startswith("http://127.0.0.1:")
    yield v
    v.close()


@pytest.fixture
def page(browser):  # first in every test's arguments: a missing browser fails before the demo run
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    pg.close()
    assert not errors, errors


def hurl(base: str, path: str, **params: str) -> str:
    """A viewer URL: ``base#path?params`` (encoded as the page encodes its own links)."""
    return f"{base}#{path}" + (f"?{urlencode(params)}" if params else "")


def goto(pg, url: str) -> None:
    pg.goto(url)
    wait(pg, "#" + url.split("#", 1)[1] if "#" in url else "#/overview")


def wait(pg, hash_: str) -> None:
    pg.wait_for_function("h => document.body.getAttribute('data-ready') === h", arg=hash_, timeout=15000)


def total(pg) -> int:
    return int(pg.get_attribute("#total", "data-total"))


def pairs_table(run_dir: Path) -> pl.DataFrame:
    return pl.read_csv(run_dir / "tables" / "consistency_pairs.csv").filter(pl.col("metric") == "paper")


def test_disagreements_match_the_pairs_table(page, run_dir, viewer):
    pairs = pairs_table(run_dir)
    row = pairs.filter(pl.col("setting").str.starts_with("Transfer") & (pl.col("variant") == "full")).row(0, named=True)
    goto(page, hurl(viewer.url, "/items"))
    # Drive the filters as a user does: each select changes the list.
    for name, value in (
        ("setting", row["setting"]),
        ("variant", "full"),
        ("metric", "paper"),
        ("pair", f"{row['model_a']}|{row['model_b']}"),
        ("agree", "disagree"),
    ):
        before = page.evaluate("location.hash")
        page.select_option(f"select[name={name}]", value)
        page.wait_for_function(
            "h => location.hash !== h && document.body.getAttribute('data-ready') === location.hash", arg=before
        )
    want = round(row["n_items"] * (1 - row["value"]))
    assert total(page) == want
    assert page.locator("#items tr[data-key]").count() == min(want, 50)
    # Every heatmap cell of the overview links to exactly its disagreements.
    goto(page, hurl(viewer.url, "/overview"))
    hrefs = set(page.locator(".heat a[data-pair]").evaluate_all("els => els.map(e => e.getAttribute('href'))"))
    hrefs = {h for h in hrefs if dict(parse_qsl(h.split("?", 1)[1]))["metric"] == "paper"}
    assert len(hrefs) == pairs.height  # one link per pair (both halves of the matrix share it)
    for href in sorted(hrefs):
        goto(page, viewer.url + href)
        q = dict(parse_qsl(href.split("?", 1)[1]))
        s, v, pair = q["setting"], q["variant"], q["pair"].split("|")
        r = pairs.filter(
            (pl.col("setting") == s)
            & (pl.col("variant") == v)
            & (pl.col("model_a") == pair[0])
            & (pl.col("model_b") == pair[1])
        ).row(0, named=True)
        assert total(page) == round(r["n_items"] * (1 - r["value"])), (s, v, pair)


def test_item_shows_source_cot_and_every_answer(page, run_dir, viewer):
    scored = pl.from_arrow(read_table(run_dir / "scored.arrow"))
    rows = with_setting(scored).filter(pl.col("method") == "transfer")
    first = rows.row(0, named=True)
    goto(page, hurl(viewer.url, "/items", setting=first["setting"], variant=first["variant"]))
    key = "|".join(str(first[c]) for c in ("setting", "variant", "dataset", "problem_id", "sample"))
    page.click(f"tr[data-key='{key}'] a.open")
    page.wait_for_selector("#targets")
    cot = page.locator("#cots .cot").first.text_content()
    assert first["cot"].strip() and first["cot"].strip() in cot
    item = rows.filter(
        (pl.col("problem_id") == first["problem_id"])
        & (pl.col("source") == first["source"])
        & (pl.col("variant") == first["variant"])
    )
    assert page.locator("#targets .card").count() == item.height
    for r in item.iter_rows(named=True):
        card = page.locator(f"#targets .card[data-target='{r['target']}']")
        assert card.locator(".extracted").text_content() == (r["extracted"] if r["extracted"] is not None else "(none)")
        assert card.locator(".reply").text_content() == (r["answer_text"] or "")
    page.set_viewport_size({"width": 1100, "height": 720})
    page.screenshot(path=str(run_dir / "view.png"))
    if os.environ.get("CROSSCOT_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(run_dir / "view.png", SCREENSHOT)


def _flips(scored: pl.DataFrame, a: str, b: str, variant: str, pair: tuple[str, str]) -> set[str]:
    """Problems whose pair agreement differs between settings a and b, by the tables' own functions."""
    vals = {}
    for s in (a, b):
        m = build_matrix(scored.filter((pl.col("setting") == s) & (pl.col("variant") == variant)), s, variant)
        names, agree, valid = pair_flags(m, "paper")
        k = names.index(pair)
        vals[s] = {it[1]: bool(agree[k][i]) for i, it in enumerate(m.items) if valid[k][i]}
    return {p for p in vals[a].keys() & vals[b].keys() if vals[a][p] != vals[b][p]}


def test_follow_a_flip_between_two_settings(page, run_dir, viewer):
    scored = with_setting(pl.from_arrow(read_table(run_dir / "scored.arrow")))
    pairs = pairs_table(run_dir)
    best = None
    for r in pairs.filter(pl.col("setting").str.starts_with("Transfer") & (pl.col("variant") == "full")).iter_rows(
        named=True
    ):
        f = _flips(scored, "Default", r["setting"], "full", (r["model_a"], r["model_b"]))
        if f and (best is None or len(f) > len(best[1])):
            best = (r, f)
    assert best is not None, "the demo run has no flip between Default and a Transfer setting"
    r, flips = best
    pair = f"{r['model_a']}|{r['model_b']}"
    goto(page, hurl(viewer.url, "/items", setting=r["setting"], variant="full", flip_from="Default", pair=pair))
    assert total(page) == len(flips)
    got = {
        k.split("|")[3] for k in page.locator("#items tr[data-key]").evaluate_all("els => els.map(e => e.dataset.key)")
    }
    assert got == flips
    page.click("#items tr[data-key] a.open >> nth=0")
    page.wait_for_selector("#others")
    page.click("#others a:text-is('Default')")
    page.wait_for_function("() => (document.body.getAttribute('data-ready') || '').includes('Default')")
    assert page.locator("#others tr.current td").first.text_content() == "Default"


def test_script_in_a_reply_shows_as_text(page, run_dir, viewer):
    t = pl.from_arrow(read_table(run_dir / "scored.arrow")).row(0, named=True)
    key = f"{setting_name(t['method'], t['source'])}|{t['variant']}|{t['dataset']}|{t['problem_id']}|{t['sample']}"
    goto(page, hurl(viewer.url, "/item", key=key))
    card = page.locator(f"#targets .card[data-target='{t['target']}'] .reply")
    assert card.text_content() == PAYLOAD
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main .reply script, main .reply b").count() == 0


def test_curves_page_and_report_have_the_partial_cot_curve(page, run_dir, viewer):
    goto(page, hurl(viewer.url, "/curves"))
    settings = page.locator(".curves").evaluate_all("els => els.map(e => e.dataset.setting)")
    want = sorted(
        pl.read_csv(run_dir / "tables" / "consistency_summary.csv")
        .filter(pl.col("variant") == "prefix_0.5")["setting"]
        .unique()
        .to_list()
    )
    assert sorted(settings) == want and any(s.startswith("Transfer") for s in settings)
    assert page.locator(".curves svg polyline").count() >= 2 * len(settings)
    md = (run_dir / "report.md").read_text()
    assert "## Partial CoT" in md and "plots/partial_cot_curves.png" in md
    assert (run_dir / "plots" / "partial_cot_curves.png").stat().st_size > 1000
    assert "Partial CoT" in (run_dir / "report.html").read_text()


def test_static_export_opens_from_disk(page, run_dir, tmp_path):
    from pipeline.cli import main

    out = tmp_path / "export"
    assert main(["view", str(run_dir), "--export", str(out)]) == 0
    assert len(list((out / "data").glob("item-*.js"))) > 1, "item details are split into pages"
    row = pairs_table(run_dir).filter(pl.col("setting") == "Default").row(0, named=True)
    url = hurl(
        (out / "index.html").as_uri(),
        "/items",
        setting="Default",
        variant="full",
        metric="paper",
        pair=f"{row['model_a']}|{row['model_b']}",
        agree="disagree",
    )
    goto(page, url)
    assert total(page) == round(row["n_items"] * (1 - row["value"]))
    page.click("#items tr[data-key] a.open >> nth=0")
    page.wait_for_selector("#targets .card")
    assert page.locator("#prompt").text_content().strip()
