"""A matrix journal entry for report tests (unit and browser): one cell, its status and latency."""

from __future__ import annotations

from typing import Any


def entry(
    model: str, env: str, mode: str, status: str, latency: float | None, **facts: Any
) -> dict[str, Any]:
    backend = "onnx-tf" if env.startswith("onnx") else "ai-edge-torch"
    return {
        "key": f"{model}|{env}|{mode}",
        "cell": {"model": model, "backend": backend, "environment": env, "mode": mode},
        "attempt": {
            "status": status,
            "error": None if status == "ok" else {"kind": "converter_error", "message": "boom"},
            "environment": env,
            "lock_hash": "abc",
            "versions": {"torch": "2.13.0"},
            "metrics": {"sqnr_db": 30.0, "cosine": 0.999},
            "facts": {"latency_ms": latency, **facts},
            "timings": {"total_s": 3.0},
        },
    }
