"""The 4-mode matrix with and without reuse between modes: wall time, per-stage split, same bytes.

For each model, ``liteport matrix --models zoo:<model> --envs <envs> --modes fp32,fp16,dynamic,int8
--jobs 1`` runs twice from an empty work folder (reference outputs and ONNX export included):
first with ``--no-reuse`` (every mode converts from scratch: "before"), then with reuse ("after").
It prints the wall times, their ratio against the issue's budget (after <= 0.65 x before), each
environment's stage times summed over its four cells, and whether every .tflite is byte-identical.
Used by ``nox -s bench``; not a test: it asserts nothing, it reports (exit 1 when a run fails).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = "fp32,fp16,dynamic,int8"
BUDGET = 0.65
# Stage times in the journal, in pipeline order (ai-edge-torch's convert_s includes its PT2E quantize_s).
STAGES = ("reference_s", "convert_s", "export_graph_s", "quantize_s", "validate_s", "total_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mobilenet_v2,resnet")
    parser.add_argument("--envs", default="litert-torch-0.10,onnx-tf-tf2.15")
    parser.add_argument("--liteport", default="liteport", help="the liteport command to run")
    parser.add_argument(
        "--reuse-from", type=Path, help="take the before runs from an earlier --keep folder (after runs only)"
    )
    parser.add_argument("--keep", type=Path, help="keep the runs' folders here (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="liteport-bench-reuse-"))
    # Warm the environments' overlays and the OS file cache, so the first timed run pays nothing extra.
    _matrix(args.liteport, "tiny_cnn", args.envs, root / "warmup", reuse=True, modes="fp32")
    lines: list[str] = []
    failed = False
    for model in args.models.split(","):
        runs = {}
        for label, reuse in (("before", False), ("after", True)):
            earlier = args.reuse_from / f"{model}-{label}" if args.reuse_from and label == "before" else None
            if earlier is not None:
                runs[label] = _matrix(args.liteport, model, args.envs, earlier, reuse=reuse, run=False)
                continue
            runs[label] = _matrix(args.liteport, model, args.envs, root / f"{model}-{label}", reuse=reuse)
            failed |= runs[label]["code"] != 0
        before, after = runs["before"]["wall_s"], runs["after"]["wall_s"]
        ratio = after / before
        verdict = "within" if ratio <= BUDGET else "OVER"
        lines.append(
            f"{model}: 4 modes x {args.envs}, --jobs 1: before (--no-reuse) {before:.1f} s, "
            f"after (reuse) {after:.1f} s = {ratio:.2f}x (budget {BUDGET}x: {verdict})"
        )
        for label in ("before", "after"):
            for env, stages in runs[label]["stages"].items():
                split = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in stages.items())
                lines.append(f"  {label:6s} {env:18s} {split} (s, summed over its cells)")
        same, differ = _compare(runs["before"]["tflite"], runs["after"]["tflite"])
        lines.append(f"  .tflite byte-identical before/after: {len(same)} of {len(same) + len(differ)}")
        lines += [f"    differs: {cell}" for cell in differ]
    print("\n".join(lines), flush=True)
    return 1 if failed else 0


def _matrix(
    liteport: str, model: str, envs: str, folder: Path, *, reuse: bool, modes: str = MODES, run: bool = True
) -> dict[str, Any]:
    out, work = folder / "report", folder / "work"
    argv = [liteport, "matrix", "--models", f"zoo:{model}", "--envs", envs, "--modes", modes]
    argv += ["--jobs", "1", "-o", str(out), "--workdir", str(work), *([] if reuse else ["--no-reuse"])]
    if run:
        print("$ " + " ".join(argv), flush=True)
        started = time.perf_counter()
        code = subprocess.run(argv, stdout=subprocess.DEVNULL, check=False).returncode
        wall = time.perf_counter() - started
        (folder / "wall_s").write_text(f"{wall}\n")
    else:  # an earlier run's figures
        code, wall = 0, float((folder / "wall_s").read_text())
    stages: dict[str, dict[str, float]] = {}
    tflite: dict[str, str] = {}
    journal = out / "journal.jsonl"
    for line in journal.read_text(encoding="utf-8").splitlines() if journal.is_file() else []:
        attempt = json.loads(line)["attempt"]
        env = attempt["environment"]
        timings = attempt.get("timings", {})
        sums = stages.setdefault(env, {k: 0.0 for k in STAGES})
        for key in STAGES:
            # the reference is made once per model: its time is repeated in every cell's timings
            if key == "reference_s" and sums[key]:
                continue
            sums[key] += float(timings.get(key) or 0.0)
        if attempt.get("tflite") and Path(attempt["tflite"]).is_file():
            digest = hashlib.sha256(Path(attempt["tflite"]).read_bytes()).hexdigest()
            tflite[f"{env} {attempt['mode']}"] = digest
    return {"code": code, "wall_s": wall, "stages": stages, "tflite": tflite}


def _compare(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    cells = sorted(set(before) | set(after))
    same = [c for c in cells if before.get(c) and before.get(c) == after.get(c)]
    return same, [c for c in cells if c not in same]


if __name__ == "__main__":
    sys.exit(main())
