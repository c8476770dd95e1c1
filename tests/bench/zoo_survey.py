"""Run zoo models x environments x modes through the real pipeline and print the figures.

Used to calibrate validation thresholds and to measure conversions (``nox -s survey``).
Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from liteport.pipeline import Engine
from liteport.plugins import get_plugin_manager
from liteport.runtimes.venv import VenvRuntime, default_cache_dir
from liteport.types import ModelSpec
from liteport.zoo import names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(names()))
    parser.add_argument("--modes", default="fp32,fp16,dynamic,int8")
    parser.add_argument("--backend", default="ai-edge-torch")
    parser.add_argument("--envs", default="", help="comma-separated; default: all of the backend's")
    parser.add_argument("--out", type=Path, default=Path("survey.json"))
    args = parser.parse_args()

    pm = get_plugin_manager(strict=True)
    backend = pm.backends()[args.backend]
    envs = [e for e in backend.environments if not args.envs or e.name in args.envs.split(",")]
    rows = []
    started = time.perf_counter()
    work = default_cache_dir() / "work"
    with Engine(
        pm=pm, runtime=VenvRuntime(), work_root=work, progress=lambda m: print(f"  ▸ {m}", flush=True)
    ) as eng:
        for env in envs:
            for model in args.models.split(","):
                for mode in args.modes.split(","):
                    a = eng.attempt(ModelSpec(ref=f"zoo:{model}"), backend, env, mode)
                    m, f, t = a.metrics, a.facts, a.timings
                    row = {
                        "env": env.name,
                        "model": model,
                        "mode": mode,
                        "status": a.status,
                        "cause": a.cause,
                        "cosine": m.get("cosine"),
                        "sqnr_db": m.get("sqnr_db"),
                        "max_abs": m.get("max_abs"),
                        "ref_max_abs": m.get("ref_max_abs"),
                        "top1": m.get("top1"),
                        "transpose": f.get("transpose_ops"),
                        "size_kb": (f.get("size_bytes") or 0) / 1e3,
                        "latency_ms": f.get("latency_ms"),
                        "convert_s": t.get("convert_s"),
                    }
                    rows.append(row)
                    print(_line(row), flush=True)
    print(f"\n{len(rows)} attempts in {time.perf_counter() - started:.0f} s")
    args.out.write_text(json.dumps(rows, indent=2))
    print("\n".join(_line(r) for r in rows))
    return 0


def _line(r: dict[str, object]) -> str:
    def f(key: str, spec: str) -> str:
        value = r.get(key)
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    return (
        f"{r['env']:<22} {r['model']:<18} {r['mode']:<8} {r['status']:<11} cos {f('cosine', '.6f')} "
        f"sqnr {f('sqnr_db', '6.1f')} maxabs {f('max_abs', '.2e')}/{f('ref_max_abs', '.2f')} "
        f"top1 {f('top1', '.2f')} T {f('transpose', 'd')} {f('size_kb', '8.0f')} kB "
        f"{f('latency_ms', '7.2f')} ms conv {f('convert_s', '6.1f')} s"
        f" {r['cause'] if r['status'] != 'ok' else ''}"
    )


if __name__ == "__main__":
    sys.exit(main())
