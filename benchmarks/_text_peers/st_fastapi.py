"""The peer most teams write for benchmarks/transformers.py: sentence-transformers inside a
FastAPI app, one POST /embed that encodes the request's text (a sync endpoint, so FastAPI runs it
in its thread pool). The model folder comes from $ST_MODEL_DIR.

    uvicorn st_fastapi:app --app-dir benchmarks/_text_peers
"""

from __future__ import annotations

import os

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

torch.set_num_threads(int(os.environ.get("ST_THREADS", "1")))
model = SentenceTransformer(os.environ["ST_MODEL_DIR"], device="cpu")
app = FastAPI()


class Texts(BaseModel):
    text: str | list[str]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/embed")
def embed(body: Texts) -> dict[str, list[list[float]] | list[float]]:
    return {"embedding": model.encode(body.text).tolist()}
