"""The cross-request batcher, driven directly with real (blocking, pure-Python) scorers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reasonrank.serve.batcher import Batcher, BatcherClosed, QueueFull
from reasonrank.serve.config import ServeConfig

ROOT = Path(__file__).resolve().parents[1]


class GatedScorer:
    """Scores a pair as ``f"{query}|{doc}"``; the first call blocks until ``gate`` is set, so work queues up."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[tuple[str, str]]] = []
        self.fail_on = fail_on

    def __call__(self, pairs: list[tuple[str, str]]) -> list[str]:
        self.calls.append(list(pairs))
        self.entered.set()
        self.gate.wait(10)
        if self.fail_on and any(d == self.fail_on for _, d in pairs):
            raise ValueError(f"docs[0] is bad: {self.fail_on}")
        return [f"{q}|{d}" for q, d in pairs]


def _pairs(q: str, n: int) -> list[tuple[str, str]]:
    return [(q, f"d{i}") for i in range(n)]


async def _wait_entered(scorer: GatedScorer) -> None:
    assert await asyncio.to_thread(scorer.entered.wait, 5)


def test_concurrent_requests_share_engine_calls() -> None:
    async def main() -> None:
        scorer = GatedScorer()
        sizes: list[int] = []
        b = Batcher(scorer, max_batch_docs=16, max_queue=10, on_batch=sizes.append)
        b.start()
        first = b.submit(_pairs("a", 2))
        await _wait_entered(scorer)  # the engine is busy with "a": the next four requests queue up
        rest = [b.submit(_pairs(q, 3)) for q in "bcde"]
        assert b.depth == 5
        scorer.gate.set()
        results = await asyncio.gather(first, *rest)
        assert results[0] == ["a|d0", "a|d1"]
        for q, res in zip("bcde", results[1:]):
            assert res == [f"{q}|d0", f"{q}|d1", f"{q}|d2"]  # each request gets its own results, in order
        assert sizes == [2, 12]  # four requests in one engine call
        assert b.depth == 0
        b.close()

    asyncio.run(main())


def test_big_requests_are_sliced_and_served_round_robin() -> None:
    async def main() -> None:
        scorer = GatedScorer()
        b = Batcher(scorer, max_batch_docs=4, max_queue=10)
        b.start()
        first = b.submit(_pairs("a", 8))
        await _wait_entered(scorer)
        big = b.submit(_pairs("big", 12))
        small = b.submit(_pairs("s", 1))
        scorer.gate.set()
        a_res, big_res, small_res = await asyncio.gather(first, big, small)
        assert a_res == [f"a|d{i}" for i in range(8)] and small_res == ["s|d0"]
        assert big_res == [f"big|d{i}" for i in range(12)]  # slices reassembled in order
        assert [len(c) for c in scorer.calls] == [4, 4, 4, 4, 4, 1]
        # after one slice of "big", the small request goes first instead of waiting for all of "big"
        assert scorer.calls[3][0] == ("s", "d0") and scorer.calls[5] == [("big", "d11")]
        b.close()

    asyncio.run(main())


def test_full_queue_refuses_and_recovers() -> None:
    async def main() -> None:
        scorer = GatedScorer()
        b = Batcher(scorer, max_batch_docs=4, max_queue=2)
        b.start()
        f1 = b.submit(_pairs("a", 1))
        f2 = b.submit(_pairs("b", 1))
        with pytest.raises(QueueFull, match="--max-queue 2"):
            b.submit(_pairs("c", 1))
        scorer.gate.set()
        await asyncio.gather(f1, f2)
        assert await b.submit(_pairs("c", 1)) == ["c|d0"]  # capacity is back
        b.close()

    asyncio.run(main())


def test_cancelled_request_frees_its_work_and_its_slot() -> None:
    async def main() -> None:
        scorer = GatedScorer()
        dropped: list[int] = []
        b = Batcher(scorer, max_batch_docs=2, max_queue=2, on_dropped=dropped.append)
        b.start()
        busy = b.submit(_pairs("a", 1))
        await _wait_entered(scorer)
        gone = b.submit(_pairs("gone", 9))
        gone.cancel()  # what the service does when the client disconnects or times out
        await asyncio.sleep(0)
        assert dropped == [9] and b.depth == 1
        late = b.submit(_pairs("late", 1))  # the freed slot is usable at once
        scorer.gate.set()
        assert await busy == ["a|d0"] and await late == ["late|d0"]
        assert all(q != "gone" for call in scorer.calls for q, _ in call)
        b.close()

    asyncio.run(main())


def test_a_bad_request_fails_alone() -> None:
    async def main() -> None:
        scorer = GatedScorer(fail_on="BAD")
        b = Batcher(scorer, max_batch_docs=16, max_queue=10)
        b.start()
        first = b.submit(_pairs("a", 1))
        await _wait_entered(scorer)
        good = b.submit(_pairs("g", 2))
        bad = b.submit([("x", "BAD")])
        scorer.gate.set()
        assert await first == ["a|d0"]
        assert await good == ["g|d0", "g|d1"]
        with pytest.raises(ValueError, match="bad"):
            await bad
        assert b.depth == 0
        b.close()

    asyncio.run(main())


def test_close_drains_queued_work_then_refuses() -> None:
    async def main() -> None:
        scorer = GatedScorer()
        b = Batcher(scorer, max_batch_docs=2, max_queue=10)
        b.start()
        futs = [b.submit(_pairs(q, 3)) for q in "abc"]
        await _wait_entered(scorer)
        closer = asyncio.ensure_future(asyncio.to_thread(b.close, 10))
        await asyncio.sleep(0.05)
        with pytest.raises(BatcherClosed, match="shutting down"):
            b.submit(_pairs("late", 1))
        scorer.gate.set()
        assert await closer is True
        assert [len(r) for r in await asyncio.gather(*futs)] == [3, 3, 3]

    asyncio.run(main())


def test_batch_wait_gathers_requests_that_arrive_together() -> None:
    async def main() -> None:
        scorer = GatedScorer()
        scorer.gate.set()
        sizes: list[int] = []
        b = Batcher(scorer, max_batch_docs=64, max_queue=64, batch_wait_s=0.2, on_batch=sizes.append)
        b.start()
        futs = []
        for q in "abcdefgh":
            futs.append(b.submit(_pairs(q, 2)))
            await asyncio.sleep(0.001)
        await asyncio.gather(*futs)
        assert sizes == [16]
        b.close()

    asyncio.run(main())


@pytest.mark.parametrize("kwargs,needle", [
    ({"max_queue": 0}, "max_queue must be a positive int"),
    ({"max_documents": -1}, "--max-documents"),
    ({"request_timeout_s": 0}, "--request-timeout"),
    ({"api_key": "  "}, "REASONRANK_API_KEY"),
])
def test_config_errors_name_the_fix(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ServeConfig(**kwargs)


def test_config_repr_hides_the_key() -> None:
    assert "hunter2" not in repr(ServeConfig(api_key="hunter2"))


def test_cli_parser_does_not_import_fastapi() -> None:
    code = ("import sys, reasonrank.cli as c; a = c._build_parser().parse_args(['serve', '--port', '9']); "
            "assert a.command == 'serve' and a.port == 9 and a.host == '127.0.0.1'; "
            "assert 'fastapi' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr


def _cli(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_missing_serve_extra_names_the_install_command() -> None:
    p = _cli("import sys; sys.modules['fastapi'] = None; from reasonrank.cli import main; "
             "sys.exit(main(['serve', '--model', 'unused']))")
    assert p.returncode == 2 and 'pip install "reasonrank[serve]"' in p.stderr, p.stderr


def test_bad_serve_option_exits_2_before_loading_a_model() -> None:
    p = _cli("import sys; from reasonrank.cli import main; "
             "sys.exit(main(['serve', '--model', 'no/such-model', '--max-queue', '0']))")
    assert p.returncode == 2 and "max_queue must be a positive int" in p.stderr and "--max-queue" in p.stderr
