"""The `reasonrank rerank` command, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.jsonl"


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reasonrank.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=600, cwd=ROOT)


def test_json_output_on_tiny_model(tiny_model_dir: Path) -> None:
    p = _run("rerank", "--model", str(tiny_model_dir), "--query", "what is bm25", "--docs", str(SAMPLE),
             "--mode", "direct", "--json", "--top-k", "4")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    ids = {json.loads(line)["id"] for line in SAMPLE.read_text().splitlines()}
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {r["id"] for r in rows} <= ids
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(abs(sum(r["label_probs"]) - 1) < 1e-6 for r in rows)


def test_table_from_stdin(tiny_model_dir: Path) -> None:
    p = _run("rerank", "--model", str(tiny_model_dir), "--query", "q", "--docs", "-", "--mode", "direct",
             stdin='"first document"\n\n{"id": "b", "text": "second document"}\n')
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["rank", "score", "label", "id"]
    assert len(lines) == 4 and {ln.split()[3] for ln in lines[2:]} == {"0", "b"}


@pytest.mark.parametrize("args,stdin,needle", [
    (["--docs", "no-such-file.jsonl"], None, "documents file 'no-such-file.jsonl' not found"),
    (["--docs", "-"], '{"text": "ok"}\n{broken\n', "<stdin>:2: not valid JSON"),
    (["--docs", "-", "--labels", "1,2"], '"doc"\n', "label scale must be"),
    (["--docs", "-"], '\n"fine"\n{"body": "x"}\n', "<stdin>:3 is a mapping without a text field"),
    (["--docs", "-", "--backend-opt", "nokey"], '"doc"\n', "--backend-opt takes KEY=VALUE"),
])
def test_errors_exit_2_with_a_fix(tiny_model_dir: Path, args: list[str], stdin: str | None, needle: str) -> None:
    p = _run("rerank", "--model", str(tiny_model_dir), "--query", "q", "--mode", "direct", *args, stdin=stdin)
    assert p.returncode == 2 and needle in p.stderr, p.stderr


def test_server_and_model_failures_are_one_line_and_exit_2(tiny_model_dir: Path) -> None:
    """HTTP 500, a server that is down and a missing model: one 'reasonrank: error:' line, no traceback."""
    from reasonrank.testing import StubServer

    base = ["rerank", "--query", "q", "--docs", str(SAMPLE)]
    remote = ["--model", "m", "--backend", "openai", "--backend-opt", "max_retries=0", "--mode", "reasoning"]
    with StubServer(lambda n, body: (500, '{"error": "boom"}')) as srv:
        http_500 = _run(*base, *remote, "--backend-opt", f"base_url={srv.url}")
    down = _run(*base, *remote, "--backend-opt", "base_url=http://127.0.0.1:9/v1")
    missing = _run(*base, "--model", "/no/such/model-dir", "--mode", "direct")
    for p, needle in ((http_500, "returned HTTP 500"), (down, "could not reach"), (missing, "does not exist")):
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("reasonrank: error:") and needle in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_empty_query_is_rejected(tiny_model_dir: Path) -> None:
    p = _run("rerank", "--model", str(tiny_model_dir), "--query", " ", "--docs", str(SAMPLE), "--mode", "direct")
    assert p.returncode == 2 and "query is empty" in p.stderr


@pytest.mark.slow
def test_readme_main_job_with_the_shipped_model() -> None:
    """The README's main job (scripts/demo.sh without its setup): BM25 over the bundled sample, reranked by
    the default model and explained, every document once, best first, each with an explanation."""
    from reasonrank.cli import read_docs

    cmd = (ROOT / "scripts" / "demo.sh").read_text().split("reasonrank rerank", 1)[1]
    args = cmd.replace("\\\n", " ").replace('"$@"', "").split()
    query = "how does BM25 score documents"
    assert args[:2] == ["--query", '"how'] and "--first-stage" in args and "--explain" in args
    rest = args[args.index("--docs"):]
    p = _run("rerank", "--query", query, *rest)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:5] == ["rank", "score", "label", "id", "explanation"]
    rows = [ln for ln in lines[2:] if ln[:4].strip()]  # explanations wrap onto indented continuation lines
    ids = [ln.split()[3] for ln in rows]
    assert sorted(ids) == sorted(d["id"] for d in read_docs(str(ROOT / "examples" / "search-sample.jsonl")))
    scores = [float(ln.split()[1]) for ln in rows]
    assert scores == sorted(scores, reverse=True) and all(len(ln.split()) > 5 for ln in rows), p.stdout
    # whether the ranking and the explanations are right is tests/test_shipped_model.py's


def test_model_defaults_come_from_reasonrank_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A direct-mode, binary-scale model directory is scored in direct mode with two labels by the CLI."""
    import shutil

    model = tmp_path / "direct-binary"
    shutil.copytree(tiny_model_dir, model)
    (model / "reasonrank.json").write_text(json.dumps({"mode": "direct", "label_scale": [0, 1]}))
    p = _run("rerank", "--model", str(model), "--query", "what is bm25", "--docs", str(SAMPLE), "--json")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert all(len(r["label_probs"]) == 2 and r["explanation"] is None for r in rows)


def test_bm25_first_stage_scores_every_document_and_keeps_the_top_k() -> None:
    from reasonrank.cli import bm25_first_stage, read_docs

    docs = read_docs(str(ROOT / "examples" / "search-sample.jsonl"))
    ranked, order = bm25_first_stage("how does BM25 score documents", docs)
    assert sorted(order) == list(range(len(docs))) and len(ranked) == len(docs)
    scores = [d.first_stage_score for d in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    by_id = {d.id: d.first_stage_score for d in ranked}
    assert by_id["sourdough"] == 0.0 and by_id["football"] == 0.0  # no shared term: kept, scored 0
    assert by_id["bm25-scanner"] > by_id["inverted-index"]     # keyword-stuffed: what a reranker must fix
    top, top_order = bm25_first_stage("how does BM25 score documents", docs, 3)
    assert [d.id for d in top] == [d.id for d in ranked[:3]] and top_order == order[:3]
    with pytest.raises(ValueError, match="--first-stage-k must be >= 1"):
        bm25_first_stage("q", docs, 0)


def test_first_stage_and_fusion_flags(tiny_model_dir: Path) -> None:
    """--first-stage bm25 reranks the BM25 top k; --fusion-weight 1 returns the BM25 order itself."""
    search = str(ROOT / "examples" / "search-sample.jsonl")
    p = _run("rerank", "--model", str(tiny_model_dir), "--query", "how does BM25 score documents", "--docs", search,
             "--mode", "direct", "--json", "--first-stage", "bm25", "--first-stage-k", "5", "--fusion-weight", "1")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    from reasonrank.cli import bm25_first_stage, read_docs

    bm25, _ = bm25_first_stage("how does BM25 score documents", read_docs(search), 5)
    assert [r["id"] for r in rows] == [d.id for d in bm25]
    p = _run("rerank", "--model", str(tiny_model_dir), "--query", "q", "--docs", search, "--mode", "direct",
             "--fusion-weight", "0.5")
    assert p.returncode == 2 and "has no first-stage score" in p.stderr and "search-sample.jsonl:1" in p.stderr


def test_prior_weight_flag(tiny_model_dir: Path) -> None:
    """--prior-weight reaches the reranker: other scores than without it; a bad value is a one-line error."""
    common = ["rerank", "--model", str(tiny_model_dir), "--query", "what is bm25", "--docs", str(SAMPLE),
              "--mode", "direct", "--json"]
    plain, prior = ({r["id"]: r["score"] for r in map(json.loads, _run(*common, *extra).stdout.splitlines())}
                    for extra in ([], ["--prior-weight", "1"]))
    assert plain.keys() == prior.keys() and plain != prior
    p = _run(*common, "--prior-weight", "2")
    assert p.returncode == 2 and "prior_weight must be a number in [0, 1]" in p.stderr


def test_explain_keeps_the_direct_ranking_and_adds_explanations(tiny_model_dir: Path) -> None:
    common = ["rerank", "--model", str(tiny_model_dir), "--query", "what is bm25", "--docs", str(SAMPLE),
              "--mode", "direct", "--json", "--top-k", "2"]
    plain = [json.loads(line) for line in _run(*common).stdout.splitlines()]
    p = _run(*common, "--explain", "--max-new-tokens", "8")
    assert p.returncode == 0, p.stderr
    explained = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(r["id"], r["score"]) for r in explained] == [(r["id"], r["score"]) for r in plain]
    assert all(r["explanation"] is not None for r in explained) and all(r["explanation"] is None for r in plain)


def test_table_wraps_explanations_whole_and_previews_documents() -> None:
    """An explanation is printed whole, wrapped under its column; a document text is a one-line preview."""
    from reasonrank.cli import _table
    from reasonrank.schema import RerankResult

    why = ("The document is relevant to the query because it provides information about Okapi BM25, a "
           "bag-of-words ranking function that weighs term frequency and document length. ") * 2
    rows = [RerankResult(index=0, id="bm25-def", text="BM25 " * 80, score=0.97, label=1, label_probs=(0.03, 0.97),
                         explanation=why, rank=1, parse_ok=False),
            RerankResult(index=1, id="pasta", text="pasta", score=0.02, label=0, label_probs=(0.98, 0.02),
                         explanation="Short.", rank=2)]
    lines = _table(rows, "reasoning").splitlines()
    first = [ln for ln in lines[2:] if not ln.startswith("   2 ")]
    assert len(first) > 1 and all(ln.startswith(" " * 37) for ln in first[1:])  # continuation lines
    assert " ".join(" ".join(ln[37:].split()) for ln in first) == " ".join(why.split()) + \
        " [unparsed: label from probabilities]"
    assert lines[-1].split()[3:] == ["pasta", "Short."]
    preview = _table(rows, "direct").splitlines()
    assert len(preview) == 4 and " BM25 ... [unparsed" in preview[2]
