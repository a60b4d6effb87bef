// crosscot view: the page. Every string that comes from a run (model output above all) is put in
// the page with textContent / text nodes, never innerHTML, so it is shown, never interpreted.
// Served: data comes from api/<name>; exported (window.CROSSCOT_STATIC): from data/*.js files.
"use strict";

const STATIC = window.CROSSCOT_STATIC || null;
const FILTERS = ["dataset", "setting", "method", "variant", "source", "target", "correct", "agree", "pair", "metric",
                 "leak", "flip_from", "sort", "desc", "page", "per_page"];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;  // CSSOM, allowed by the CSP (a style attribute is not)
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined) continue;
    e.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x)) ? "—" : Number(x).toFixed(d);
const ci = (lo, hi) => (lo === null || lo === undefined) ? "" : ` [${fmt(lo)}, ${fmt(hi)}]`;
const qs = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
const itemsLink = (o) => "#/items?" + qs(o);
const itemLink = (key) => "#/item?" + qs({key});

// ------------------------------------------------------------------ data access
const loaded = {};
window.__crosscotData = (name, payload) => { loaded[name] = payload; };
function loadScript(name) {
  if (loaded[name] !== undefined) return Promise.resolve(loaded[name]);
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = "data/" + name + ".js";
    s.onload = () => resolve(loaded[name]);
    s.onerror = () => reject(new Error("cannot load data/" + name + ".js"));
    document.body.appendChild(s);
  });
}

async function api(name, params) {
  if (STATIC) return staticApi(name, params || {});
  const r = await fetch("api/" + name + "?" + qs(params || {}));
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

let allRows = null;
async function staticRows() {
  if (allRows) return allRows;
  const chunks = [];
  for (let i = 0; i < STATIC.chunks; i++) chunks.push(await loadScript("index-" + i));
  allRows = chunks.flat();
  return allRows;
}
function agreeValue(r, f) {
  const fl = (r.flags || {})[f.metric || "paper"] || {};
  if (f.pair) {
    const [a, b] = f.pair.split("|");
    if (b === "source") return fl[a + "|source"];
    return fl[a + "|" + b] !== undefined ? fl[a + "|" + b] : fl[b + "|" + a];
  }
  const vals = Object.entries(fl).filter(([k]) => !k.endsWith("|source")).map(([, v]) => v);
  return vals.length ? vals.every(Boolean) : undefined;
}
function correctValue(r, target) {
  if (target) return r.answers[target] ? !!r.answers[target].correct : undefined;
  return Object.values(r.answers).every((a) => !!a.correct);
}
function cmp(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return a < b ? -1 : 1;
}
async function staticApi(name, p) {
  if (name !== "items" && name !== "item") return loadScript(name);
  const rows = await staticRows();
  if (name === "item") {
    const r = rows.find((x) => x.key === p.key);
    if (!r) throw new Error("not found: " + p.key);
    const bucket = await loadScript("item-" + r.bucket);
    return bucket[p.key];
  }
  let out = rows;
  for (const c of ["dataset", "setting", "method", "variant", "source"]) if (p[c]) out = out.filter((r) => r[c] === p[c]);
  const flipOnAgree = p.pair || !p.target;
  if (p.flip_from && p.setting) {
    const other = new Map();
    for (const r of rows) if (r.setting === p.flip_from && (!p.variant || r.variant === p.variant))
      other.set([r.variant, r.dataset, r.problem_id, r.sample].join("|"), r);
    out = out.flatMap((r) => {
      const o = other.get([r.variant, r.dataset, r.problem_id, r.sample].join("|"));
      if (!o) return [];
      const v = flipOnAgree ? agreeValue(r, p) : correctValue(r, p.target);
      const w = flipOnAgree ? agreeValue(o, p) : correctValue(o, p.target);
      return (v === undefined || w === undefined || v === w) ? [] : [{...r, flip: [w, v]}];
    });
  }
  if (p.target) out = out.filter((r) => r.answers[p.target]);
  if (p.leak === "yes" || p.leak === "no") out = out.filter((r) => (!!r.leak) === (p.leak === "yes"));
  if (p.correct === "correct" || p.correct === "incorrect")
    out = out.filter((r) => correctValue(r, p.target) === (p.correct === "correct"));
  if (p.agree === "agree" || p.agree === "disagree") {
    const want = p.agree === "agree";
    out = out.filter((r) => agreeValue(r, p) === want);
  }
  const sort = p.sort || "problem_id", desc = p.desc === "1";
  const ties = ["setting", "variant", "dataset", "problem_id", "sample"].filter((c) => c !== sort);
  out = out.slice().sort((a, b) => {
    const c = cmp(a[sort], b[sort]);
    if (c) return desc && a[sort] !== null && b[sort] !== null ? -c : c;
    for (const t of ties) { const d = cmp(a[t], b[t]); if (d) return d; }
    return 0;
  });
  const per = Number(p.per_page || 50), page = Number(p.page || 1);
  return {total: out.length, page, per_page: per, pages: Math.max(1, Math.ceil(out.length / per)),
          targets: STATIC.targets, rows: out.slice((page - 1) * per, page * per), live: false};
}

// ------------------------------------------------------------------ pages
const main = () => document.getElementById("main");
function show(...nodes) { main().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined)); }

function verdict(a) {
  if (!a) return el("td", {class: "muted"}, "—");
  return el("td", {class: a.correct ? "ok" : "bad", title: a.correct ? "correct" : "incorrect"},
            a.extracted === null || a.extracted === undefined ? (a.error ? "error" : "(none)") : a.extracted);
}

async function pageOverview() {
  const o = await api("overview");
  if (!o.has_tables) return show(el("p", {}, "No tables yet (the run has not been scored): see ", el("a", {href: "#/items"}, "Items"), "."));
  const metrics = o.metrics;
  const head = el("tr", {}, el("th", {}, "setting"), el("th", {}, "variant"),
    metrics.map((m) => el("th", {}, `consistency (${m}) [95% CI]`)), o.targets.map((t) => el("th", {}, `accuracy ${t}`)), el("th", {}, "items"));
  const body = o.groups.map((g) => el("tr", {},
    el("td", {}, g.setting), el("td", {}, g.variant),
    metrics.map((m) => { const c = g.consistency[m]; return el("td", {class: "num"}, c ? fmt(c.mean) + ci(c.ci_low, c.ci_high) : "—"); }),
    o.targets.map((t) => { const a = g.accuracy[t]; return el("td", {class: "num"}, a ? el("a", {href: itemsLink({setting: g.setting, variant: g.variant, target: t, correct: "incorrect"}), title: "incorrect items"}, fmt(a.accuracy) + ci(a.ci_low, a.ci_high) + ` n=${a.n}`) : "—"); }),
    el("td", {}, el("a", {href: itemsLink({setting: g.setting, variant: g.variant})}, "items"),
       " · ", el("a", {href: itemsLink({setting: g.setting, variant: g.variant, agree: "disagree"})}, "disagreements"))));
  const heat = o.heatmaps.map((h) => {
    const val = {};
    for (const c of h.cells) { val[c.model_a + "|" + c.model_b] = c; val[c.model_b + "|" + c.model_a] = c; }
    const rows = h.models.map((a) => el("tr", {}, el("th", {}, a), h.models.map((b) => {
      if (a === b) return el("td", {class: "cell muted"}, "1");
      const c = val[a + "|" + b];
      if (!c) return el("td", {class: "cell"}, "");
      const v = c.value === null ? 0 : c.value;
      const n = c.n_items, dis = c.value === null ? null : Math.round(n * (1 - c.value));
      return el("td", {class: "cell", style: `background: hsl(${Math.round(120 * v)}, 60%, ${88 - 18 * v}%)`},
        el("a", {href: itemsLink({setting: h.setting, variant: h.variant, metric: h.metric, pair: c.model_a + "|" + c.model_b, agree: "disagree"}),
                 title: `${dis} of ${n} items disagree`, "data-pair": c.model_a + "|" + c.model_b}, fmt(c.value, 2)));
    })));
    return el("figure", {}, el("figcaption", {}, `${h.setting} · ${h.variant} · ${h.metric}`),
      el("table", {class: "heat"}, el("tr", {}, el("th", {}, ""), h.models.map((m) => el("th", {}, m))), rows));
  });
  show(el("h2", {}, "Consistency and accuracy"), el("table", {id: "summary"}, head, body),
       el("h2", {}, "Pairwise agreement (click a cell for the items where the pair disagrees)"), el("div", {class: "heatmaps"}, heat));
}

async function pageItems(params) {
  const [facets, res] = await Promise.all([api("facets"), api("items", params)]);
  const f = {...params};
  const go = (patch) => { location.hash = itemsLink({...f, page: "", ...patch}); };
  const select = (name, values, label) => el("label", {}, label || name, el("select", {name, onchange: (e) => go({[name]: e.target.value})},
    el("option", {value: ""}, "(any)"), values.map((v) => { const [val, text] = Array.isArray(v) ? v : [v, v];
      return el("option", {value: val, selected: f[name] === val}, text); })));
  const pairs = [];
  const ts = facets.target;
  for (let i = 0; i < ts.length; i++) {
    for (let j = i + 1; j < ts.length; j++) pairs.push([ts[i] + "|" + ts[j], ts[i] + " vs " + ts[j]]);
    pairs.push([ts[i] + "|source", ts[i] + " vs source's own answer"]);
  }
  const form = el("div", {class: "filters"},
    select("dataset", facets.dataset), select("setting", facets.setting), select("method", facets.method),
    select("variant", facets.variant), select("source", facets.source), select("target", facets.target),
    select("correct", ["correct", "incorrect"], "correct (target; else all)"),
    select("agree", ["agree", "disagree"], "agreement"), select("pair", pairs, "pair (else all pairs)"),
    select("metric", facets.metric), select("leak", [["yes", "leak flagged"], ["no", "no leak"]], "leak"),
    select("flip_from", facets.setting, "flips from setting (vs setting above)"),
    select("sort", ["problem_id", "setting", "variant", "dataset", "n_correct", "n_targets", "leak"], "sort by"),
    el("label", {}, "descending", el("input", {type: "checkbox", checked: f.desc === "1", onchange: (e) => go({desc: e.target.checked ? "1" : ""})})),
    el("a", {href: "#/items"}, "clear"));
  const targets = res.targets;
  const flip = res.rows.length && res.rows[0].flip;
  const head = el("tr", {}, ["", "setting", "variant", "problem", "source", "gold"].map((h) => el("th", {}, h)),
    targets.map((t) => el("th", {}, t)), el("th", {}, "leak"), flip ? el("th", {}, "flip") : null);
  const rows = res.rows.map((r) => el("tr", {"data-key": r.key},
    el("td", {}, el("a", {href: itemLink(r.key), class: "open"}, "open")), el("td", {}, r.setting), el("td", {}, r.variant),
    el("td", {}, `${r.problem_id}` + (r.sample ? ` #${r.sample}` : "")), el("td", {}, r.source), el("td", {}, r.gold === null ? "" : String(r.gold)),
    targets.map((t) => verdict(r.answers[t])), el("td", {}, r.leak ? "leak" : ""),
    flip ? el("td", {}, `${r.flip[0] ? "yes" : "no"} → ${r.flip[1] ? "yes" : "no"}`) : null));
  const page = res.page, pages = res.pages;
  const pager = el("div", {class: "pager"},
    el("span", {id: "total", "data-total": res.total}, `${res.total} items`),
    page > 1 ? el("a", {href: itemsLink({...f, page: page - 1}), id: "prev"}, "‹ prev") : null,
    el("span", {}, `page ${page} of ${pages}`),
    page < pages ? el("a", {href: itemsLink({...f, page: page + 1}), id: "next"}, "next ›") : null,
    res.live ? el("span", {class: "muted"}, "(run in progress: answers so far)") : null);
  show(form, pager, el("table", {id: "items"}, head, rows), pager.cloneNode(true));
}

function cotNode(c) {
  return el("div", {class: "text cot"}, c.segments.map((s) =>
    s.removed ? el("del", {class: "removed", title: "removed by the answer filter / not given"}, s.text)
      : s.leak ? el("mark", {class: "leak", title: "leak audit: the source's answer"}, s.text) : s.text));
}

async function pageItem(params) {
  const d = await api("item", params);
  const p = d.problem;
  const cots = d.cots.map((c) => el("div", {class: "card"},
    el("h4", {}, `CoT by ${c.source}`, c.for_targets !== "all" ? ` (own, answered by ${c.for_targets.join(", ")})` : ""),
    el("div", {class: "muted"}, `variant ${c.variant}` + (c.filter ? ` · filter ${c.filter}` : "") +
      (c.cot_tokens ? ` · ${c.cot_tokens} tokens` : "") + (c.leak ? " · LEAK flagged" : "") +
      (c.n_removed ? ` · ${c.n_removed} removed part(s) struck through` : "") +
      (c.source_answer ? ` · source's answer ${c.source_answer}` : "")), cotNode(c)));
  const cards = d.targets.map((t) => el("div", {class: "card target", "data-target": t.target},
    el("h4", {}, t.target), el("div", {class: t.correct ? "ok" : "bad"}, "answer: ", el("b", {class: "extracted"}, t.extracted === null ? "(none)" : t.extracted),
      t.correct ? " — correct" : " — incorrect"),
    t.error ? el("div", {class: "err"}, t.error) : null,
    el("div", {class: "muted"}, `finish ${t.finish_reason || "?"} · ${t.answer_tokens ?? "?"} tokens`),
    el("div", {class: "text reply"}, t.answer_text === null ? "" : t.answer_text)));
  const ts = d.all_targets;
  const others = el("table", {id: "others"}, el("tr", {}, el("th", {}, "setting"), el("th", {}, "variant"), ts.map((t) => el("th", {}, t))),
    d.others.map((o) => el("tr", {class: o.current ? "current" : ""},
      el("td", {}, o.current ? o.setting : el("a", {href: itemLink(o.key)}, o.setting)), el("td", {}, o.variant), ts.map((t) => verdict(o.answers[t])))));
  const ens = d.ensemble.length ? [el("h3", {}, "Ensemble: candidates per sentence (winner = lowest mean score)"),
    el("table", {}, el("tr", {}, ["step", "generator", "candidate", "scores", "mean", "winner"].map((h) => el("th", {}, h))),
      d.ensemble.flatMap((s) => s.candidates.map((c) => el("tr", {class: c.winner ? "ok" : ""},
        el("td", {}, s.step), el("td", {}, c.generator), el("td", {}, el("div", {class: "text"}, c.text || "")),
        el("td", {}, Object.entries(c.scores || {}).map(([k, v]) => `${k}: ${fmt(v)}`).join(", ")),
        el("td", {class: "num"}, fmt(c.mean_score)), el("td", {}, c.winner ? "won" : "")))))] : [];
  show(el("h2", {}, `${d.setting} · ${d.variant} · ${p.dataset} ${p.problem_id}` + (p.sample ? ` sample ${p.sample}` : "")),
    el("h3", {}, "Problem"), p.system ? el("div", {class: "text"}, p.system) : null, el("div", {class: "text", id: "prompt"}, p.prompt || "(problem text not in the store)"),
    el("p", {}, "gold: ", el("b", {id: "gold"}, JSON.stringify(p.gold))),
    el("h3", {}, "Source CoT"), d.cots.length ? el("div", {class: "cards", id: "cots"}, cots) : el("p", {class: "muted"}, "no CoT (Empty)"),
    el("h3", {}, "Targets"), el("div", {class: "cards", id: "targets"}, cards),
    el("h3", {}, "The same problem in every setting"), others, ens);
}

function svgEl(tag, attrs, ...kids) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) e.appendChild(typeof k === "object" ? k : document.createTextNode(String(k)));
  return e;
}
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
function linePlot(title, series) {
  const W = 420, H = 240, L = 40, R = 120, T = 20, B = 30;
  const x = (f) => L + f * (W - L - R), y = (v) => T + (1 - v) * (H - T - B);
  const s = svgEl("svg", {width: W, height: H, class: "curve"});
  s.appendChild(svgEl("text", {x: L, y: 12}, title));
  for (const v of [0, 0.5, 1]) { s.appendChild(svgEl("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#ddd"}));
    s.appendChild(svgEl("text", {x: 8, y: y(v) + 4}, v)); }
  for (const f of [0, 0.25, 0.5, 0.75, 1]) s.appendChild(svgEl("text", {x: x(f) - 8, y: H - 10}, f));
  series.forEach(([name, pts], i) => {
    const c = COLORS[i % COLORS.length], ok = pts.filter((p) => p.value !== null);
    if (!ok.length) return;
    const band = ok.filter((p) => p.ci_low !== null);
    if (band.length > 1) s.appendChild(svgEl("polygon", {fill: c, opacity: 0.12, points:
      band.map((p) => `${x(p.fraction)},${y(p.ci_high)}`).concat(band.slice().reverse().map((p) => `${x(p.fraction)},${y(p.ci_low)}`)).join(" ")}));
    s.appendChild(svgEl("polyline", {fill: "none", stroke: c, "stroke-width": 2, points: ok.map((p) => `${x(p.fraction)},${y(p.value)}`).join(" ")}));
    for (const p of ok) s.appendChild(svgEl("circle", {cx: x(p.fraction), cy: y(p.value), r: 3, fill: c},
      svgEl("title", {}, `${name} @ ${p.fraction}: ${fmt(p.value)}${ci(p.ci_low, p.ci_high)}`)));
    s.appendChild(svgEl("text", {x: W - R + 6, y: T + 14 * i + 8, fill: c}, name));
  });
  return s;
}

async function pageCurves(params) {
  const d = await api("curves");
  const metric = params.metric || (d.metrics.includes("paper") ? "paper" : d.metrics[0]);
  const cs = (d.curves[metric] || []);
  if (!cs.length) return show(el("p", {}, "This run has no partial-CoT variants (set truncate.prefix_fractions and add prefix_<f> to transfer.variants)."));
  show(el("p", {}, "metric: ", d.metrics.map((m) => [el("a", {href: "#/curves?" + qs({metric: m})}, m), " "])),
    cs.map((c) => el("div", {class: "curves", "data-setting": c.setting}, el("h3", {}, c.setting),
      linePlot(`consistency (${c.metric}) vs fraction of the CoT`, [["consistency", c.consistency]]),
      linePlot("accuracy vs fraction of the CoT", Object.entries(c.accuracy)))));
}

async function route() {
  const h = location.hash || "#/overview";
  const [path, query] = h.slice(1).split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#" + path);
  try {
    if (path === "/items") await pageItems(params);
    else if (path === "/item") await pageItem(params);
    else if (path === "/curves") await pageCurves(params);
    else await pageOverview();
  } catch (e) {
    show(el("p", {class: "err", id: "error"}, "error: " + e.message));
  }
  document.body.setAttribute("data-ready", h);
}

window.addEventListener("hashchange", route);
api("facets").then((f) => { document.getElementById("run").textContent = f.run + (f.live ? " (in progress)" : ""); }).catch(() => {});
route();
