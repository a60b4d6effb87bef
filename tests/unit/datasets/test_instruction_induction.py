"""Instruction Induction plug-in: loading the shared data, prompts, extraction and similarity checks."""

from __future__ import annotations

import json
from pathlib import Path
from pipeline.config import DatasetConfig

import pytest

from pipeline.datasets import get_dataset
from pipeline.datasets.instruction_induction import (
    EMBEDDING_THRESHOLD,
    ORIGINAL_TASKS,
    DatasetError,
    InstructionInduction,
    build_prompt,
    normalize_instruction,
    parse_demonstrations,
    similarity,
)

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "../shared/data/instruction-induction"

needs_data = pytest.mark.shared_data(DATA / "induction_input")  # absent -> FAIL (tests/conftest.py)


def cfg(path=DATA, **options):
    return DatasetConfig(
        name="instruction_induction", path=str(path) if path else None, limit=None, seed=0, options=options
    )


SEEN = "Input: hot\nOutput: cold\n\nInput: up\nOutput: down\n\nInput: in\nOutput: out\n\nInput: big\nOutput: small\n\nInput: day\nOutput: night"


def test_parse_and_build_prompt():
    demos = parse_demonstrations(SEEN)
    assert len(demos) == 5 and demos[0] == {"input": "hot", "output": "cold"}
    orig = build_prompt(demos, "original")
    assert orig.startswith("I gave a friend an instruction and five inputs.") and orig.endswith("The instruction was")
    assert SEEN in orig
    chat = build_prompt(demos, "chat")
    assert chat.endswith("'Instruction: <the instruction>'.") and SEEN in chat
    with pytest.raises(DatasetError):
        build_prompt(demos, "weird")


def test_extract():
    ds = InstructionInduction()
    assert (
        ds.extract("Hmm, opposites.\nInstruction: Write the antonym of the word.") == "Write the antonym of the word."
    )
    assert ds.extract('**Instruction:** "Output the opposite word"') == "Output the opposite word"
    assert (
        ds.extract("I think the instruction was to write the opposite of each word")
        == "to write the opposite of each word"
    )
    assert ds.extract("Some thinking\n\nGive the antonym.") == "Give the antonym."
    assert ds.extract("") is None and ds.extract(None) is None


def test_exact_similarity_and_check():
    gold = {
        "annotations": ["Write the opposite of the word.", "Give an antonym"],
        "similarity": "exact",
        "threshold": 1.0,
    }
    ds = InstructionInduction()
    assert similarity("write the opposite of the word", gold, "exact") == 1.0
    assert ds.check("Give an antonym!", gold)
    assert not ds.check("Give a synonym", gold)
    assert not ds.check(None, gold)
    assert normalize_instruction("  Don't  SHOUT. ") == "don't shout"


def test_bertscore_without_model_is_a_clear_error():
    with pytest.raises(DatasetError, match="bertscore_model"):
        similarity("a", ["b"], "bertscore")
    with pytest.raises(DatasetError, match="bertscore_model"):
        InstructionInduction().load(cfg(similarity="bertscore"))


def test_embedding_similarity_ranks_paraphrases_first():
    refs = [
        "Write a word that means the opposite of the input word.",
        "Write an antonym of the following word:",
        "output the opposite of",
    ]
    close = similarity("Output the antonym of the given word.", refs, "embedding")
    far = similarity("Translate the sentence into German.", refs, "embedding")
    assert close > far
    assert close >= EMBEDDING_THRESHOLD > far
    ds = InstructionInduction()
    gold = {"annotations": refs, "similarity": "embedding", "threshold": EMBEDDING_THRESHOLD}
    assert ds.check("Output the antonym of the given word.", gold)
    assert not ds.check("Translate the sentence into German.", gold)
    assert ds.similarity("Output the antonym of the given word.", gold) == pytest.approx(close, abs=1e-5)


def test_bertscore_with_a_local_encoder():
    from pipeline.datasets.instruction_induction import _resolve_embedding_dir

    enc = _resolve_embedding_dir()  # any local transformers encoder works as a BERTScore scorer
    same = similarity("write the opposite word", ["write the opposite word"], "bertscore", bertscore_model=enc)
    other = similarity("write the opposite word", ["translate to French"], "bertscore", bertscore_model=enc)
    assert same == pytest.approx(1.0, abs=1e-4) and other < same


@needs_data
def test_load_all_tasks():
    t = get_dataset("instruction_induction").load(cfg())
    rows = t.to_pylist()
    tasks = {json.loads(r["meta"])["task"] for r in rows}
    assert len(tasks) == 36 and set(ORIGINAL_TASKS) <= tasks
    assert t.num_rows == 24 * 100 + 12 * 15
    assert len({r["problem_id"] for r in rows}) == t.num_rows
    r0 = rows[0]
    assert r0["problem_id"] == "ii-active_to_passive-001"
    gold = json.loads(r0["gold"])
    assert gold["task"] == "active_to_passive" and gold["annotations"] and gold["threshold"] == EMBEDDING_THRESHOLD
    assert len(json.loads(r0["meta"])["demonstrations"]) == 5


@needs_data
def test_original_style_matches_the_benchmark_prompts():
    """Our rebuilt completion-style prompts equal the benchmark's, except where the source prompt has
    typos that its own demonstrations (examples_seen) do not."""
    t = InstructionInduction().load(cfg(prompt_style="original"))
    ours = {r["problem_id"]: r["prompt"] for r in t.to_pylist()}
    differ = []
    for f in sorted((DATA / "induction_input").glob("*.json")):
        for k, ex in json.loads(f.read_text())["examples"].items():
            pid = f"ii-{f.stem}-{int(k):03d}"
            if ours[pid] != ex["input"]:
                differ.append(pid)
    assert len(differ) <= 5, differ
    assert all(
        d.startswith(("ii-first_word_alphabetically_return_reverse-", "ii-most_vowel_return_consonant-"))
        for d in differ
    ), differ


@needs_data
def test_task_selection_and_per_task(tmp_path):
    ds = InstructionInduction()
    t = ds.load(cfg(tasks="added", per_task=2))
    tasks = {json.loads(m)["task"] for m in t.column("meta").to_pylist()}
    assert len(tasks) == 12 and not tasks & set(ORIGINAL_TASKS) and t.num_rows == 24
    t = ds.load(cfg(tasks=["sum", "antonyms"], per_task=3, similarity="exact"))
    assert t.num_rows == 6 and json.loads(t.column("gold")[0].as_py())["threshold"] == 1.0
    with pytest.raises(DatasetError, match="unknown"):
        ds.load(cfg(tasks=["no_such_task"]))
    assert ds.load(cfg(tasks="original", per_task=1)).num_rows == 24


def test_malformed_folder_and_rows(tmp_path):
    with pytest.raises(DatasetError, match="dataset.path is required"):
        InstructionInduction().load(cfg(None))
    with pytest.raises(DatasetError, match="not an Instruction Induction folder"):
        InstructionInduction().load(cfg(tmp_path))
    (tmp_path / "induction_input").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "t.json").write_text(json.dumps({"annotations": ["do it"]}))
    (tmp_path / "induction_input" / "t.json").write_text(
        json.dumps(
            {
                "examples": {
                    "1": {"input": "x", "metadata": {"examples_seen": SEEN}},
                    "2": {"input": "x", "metadata": {}},
                    "3": {"input": "x", "metadata": {"examples_seen": "Input: a\nOutput: b"}},
                }
            }
        )
    )
    with pytest.raises(DatasetError) as e:
        InstructionInduction().load(cfg(tmp_path))
    assert "t.json: row '2': field 'metadata.examples_seen'" in str(e.value)
    ds = InstructionInduction()
    with pytest.warns(UserWarning, match="skipped 2"):
        t = ds.load(cfg(tmp_path, on_bad_row="skip", similarity="exact"))
    assert t.column("problem_id").to_pylist() == ["ii-t-001"]
    assert [s["row"] for s in ds.skipped] == ["2", "3"]
    (tmp_path / "induction_input" / "u.json").write_text(json.dumps({"examples": {}}))
    with pytest.raises(DatasetError, match="no gold annotations"):
        InstructionInduction().load(cfg(tmp_path, tasks=["u"]))


def test_config_composes():
    from pipeline.config import compose

    r = compose(["dataset=instruction_induction"])
    assert r.dataset.name == "instruction_induction"
    assert r.dataset.options["similarity"] == "embedding"
