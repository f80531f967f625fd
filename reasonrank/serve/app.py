"""The FastAPI app: Cohere/Jina (``/v1/rerank``, ``/v2/rerank``) and TEI (``/rerank``) rerank endpoints,
``/health``, ``/v1/models`` and ``/metrics``.

Example:
    >>> from reasonrank import ReasoningReranker                                    # doctest: +SKIP
    >>> from reasonrank.serve import ServeConfig, create_app                        # doctest: +SKIP
    >>> app = create_app(ReasoningReranker("reasonrank-tiny"), ServeConfig())      # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000)  -- or: reasonrank serve --model reasonrank-tiny
"""

from __future__ import annotations

import uuid
from typing import Any

from .._deps import require
from .config import ServeConfig
from .schemas import (
    ApiError,
    CohereRerankRequest,
    TEIRerankRequest,
    cohere_documents,
    decode_body,
    parse_body,
    tei_documents,
    validate,
)
from .service import RerankService, ranked

__all__ = ["create_app"]

require("fastapi", "serve", purpose="reasonrank serve")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402

from .middleware import GuardMiddleware  # noqa: E402


def _cohere_response(svc: RerankService, req: CohereRerankRequest, results: list[Any], echo: list[dict[str, Any]],
                     api_version: str, explain_default: bool = False) -> dict[str, Any]:
    explain = req.return_explanations if req.return_explanations is not None else \
        (svc.reranker.mode == "reasoning" or explain_default)
    rows = []
    for r in ranked(results, req.top_n):
        row: dict[str, Any] = {"index": r.index, "relevance_score": r.score}
        if req.return_documents:
            row["document"] = echo[r.index]
        row["label"] = r.label
        if explain:
            row["explanation"] = r.explanation
        row["parse_ok"] = r.parse_ok
        row["truncated"] = r.truncated
        row["error"] = r.error
        rows.append(row)
    return {"id": str(uuid.uuid4()), "model": svc.config.model_name, "results": rows,
            "meta": {"api_version": {"version": api_version}, "billed_units": {"search_units": 1}},
            "usage": {"search_units": 1, "documents": len(results)}}


async def _cohere(svc: RerankService, request: Request, data: dict[str, Any] | None, api_version: str
                  ) -> dict[str, Any]:
    req = validate(data, CohereRerankRequest) if data is not None else \
        parse_body(await request.body(), CohereRerankRequest)
    docs, echo = cohere_documents(req, svc.config)
    results = await svc.score(req.query, docs, request.receive)
    n_explain = svc.explain_count(req.return_explanations, req.top_n)
    if n_explain:
        results = await svc.explain(req.query, docs, results, n_explain, request.receive)
    return _cohere_response(svc, req, results, echo, api_version, explain_default=bool(n_explain))


async def _tei(svc: RerankService, request: Request, data: dict[str, Any]) -> list[dict[str, Any]]:
    req = validate(data, TEIRerankRequest)
    docs = tei_documents(req, svc.config)
    results = await svc.score(req.query, docs, request.receive)
    if req.truncate is False:
        cut = [r.index for r in results if r.truncated]
        if cut:
            raise ApiError(413, f"texts[{cut[0]}] is longer than the server's --max-doc-tokens "
                                f"({svc.reranker.max_doc_tokens} tokens) and truncate is false; send truncate: true "
                                "or shorten it", field=f"texts[{cut[0]}]")
    top = svc.reranker.labels[-1]
    out = []
    for r in ranked(results):
        row: dict[str, Any] = {"index": r.index, "score": r.score * top if req.raw_scores else r.score}
        if req.return_text:
            row["text"] = req.texts[r.index]
        out.append(row)
    return out


def create_app(reranker: Any, config: ServeConfig | None = None) -> Any:
    """Build the ASGI app serving ``reranker`` (a loaded :class:`~reasonrank.ReasoningReranker`).

    The app's lifespan starts the cross-request batcher; run it with uvicorn (``reasonrank serve`` does,
    with graceful draining on SIGTERM). ``app.state.service`` is the :class:`RerankService`.
    """
    config = config or ServeConfig()
    svc = RerankService(reranker, config)
    app = FastAPI(title="reasonrank", summary="Reasoning reranker: Cohere/Jina/TEI-compatible rerank API",
                  lifespan=svc.lifespan)
    app.state.service = svc

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.post("/v1/rerank", summary="Cohere v1 / Jina rerank")
    async def rerank_v1(request: Request) -> dict[str, Any]:
        return await _cohere(svc, request, None, "1")

    @app.post("/v2/rerank", summary="Cohere v2 rerank (cohere.ClientV2.rerank)")
    async def rerank_v2(request: Request) -> dict[str, Any]:
        return await _cohere(svc, request, None, "2")

    @app.post("/rerank", summary="TEI rerank (body with 'texts') or Cohere/Jina rerank (body with 'documents')")
    async def rerank_any(request: Request) -> Any:
        data = decode_body(await request.body())
        if "texts" in data:
            return await _tei(svc, request, data)
        if "documents" in data:
            return await _cohere(svc, request, data, "1")
        raise ApiError(422, "the body has neither 'documents' (Cohere/Jina schema) nor 'texts' (TEI schema); send "
                            "one of them with 'query'", field="documents")

    @app.get("/health", summary="liveness/readiness: 200 when serving, 503 while draining")
    async def health() -> Any:
        body = {"status": "draining" if svc.draining else "ok", "model": config.model_name,
                "mode": reranker.mode, "queue_depth": svc.batcher.depth}  # open endpoint: no backend URLs
        return JSONResponse(body, status_code=503 if svc.draining else 200)

    @app.get("/v1/models", summary="the served model (OpenAI-style list)")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.model_name, "object": "model",
                                            "created": int(svc.started_at), "owned_by": "reasonrank",
                                            "mode": reranker.mode, "labels": list(reranker.labels),
                                            "backend": reranker.backend.describe()}]}

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        data, content_type = svc.metrics.render()
        return Response(data, media_type=content_type)

    app.add_middleware(GuardMiddleware, service=svc)
    return app
