"""The 4-mode matrix with and without reuse between modes: wall time, per-stage split, same bytes.

For each model, ``liteport matrix --models zoo:<model> --envs <envs> --modes fp32,fp16,dynamic,int8
--jobs 1`` runs three times from an empty work folder (reference outputs and ONNX export included):

* "filed": liteport as it was when the throughput issue was filed (``--baseline``, the commit
  before its work), installed into a venv of its own: the issue's "today's wall time";
* "before": this liteport with ``--no-reuse`` (every mode converts from scratch);
* "after": this liteport with reuse.

It prints the wall times, after / filed against the issue's budget (0.65) and after / before (what
reuse alone saves, stricter: the other speed-ups since, e.g. onnx-tf without autograph, make both
sides faster), each environment's stage times summed over its four cells, and whether the .tflite
files are byte-identical (before/after: all must be; filed/after: litert-torch's dynamic is a
different quantizer since d2fb92f). Used by ``nox -s bench``; not a test: it asserts nothing, it
reports (exit 1 when a run fails).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

from liteport.runtimes.venv import default_cache_dir

MODES = "fp32,fp16,dynamic,int8"
BUDGET = 0.65
# The commit before the throughput issue's work (41ff58b "Matrix reuse between a model's modes").
ISSUE_FILED = "6a1ae0fd30328fdac77ff6b46a62249da2482173"
# Stage times in the journal, in pipeline order (ai-edge-torch's convert_s includes its PT2E quantize_s).
STAGES = ("reference_s", "convert_s", "export_graph_s", "quantize_s", "validate_s", "total_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mobilenet_v2,resnet")
    parser.add_argument("--envs", default="litert-torch-0.10,onnx-tf-tf2.15")
    parser.add_argument("--liteport", default="liteport", help="the liteport command to run")
    parser.add_argument(
        "--reuse-from", type=Path, help="filed/before runs from an earlier --keep folder (run after only)"
    )
    parser.add_argument("--keep", type=Path, help="keep the runs' folders here (default: a temporary folder)")
    parser.add_argument(
        "--baseline",
        default=ISSUE_FILED,
        help="git revision whose liteport makes the 'filed' run (default: the one before the issue's work)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the 'filed' run")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="liteport-bench-reuse-"))
    root.mkdir(parents=True, exist_ok=True)
    commands = {"before": args.liteport, "after": args.liteport}
    if not args.no_baseline:
        commands = {"filed": str(_install_revision(args.baseline)), **commands}
    # Warm each liteport's overlay and the OS file cache, so the first timed run pays nothing extra.
    for command in dict.fromkeys(commands.values()):
        warmup = Path(tempfile.mkdtemp(dir=root, prefix="warmup-"))
        _matrix(command, "tiny_cnn", args.envs, warmup, modes="fp32")
    lines: list[str] = []
    failed = False
    for model in args.models.split(","):
        runs = {}
        for label, command in commands.items():
            earlier = args.reuse_from / f"{model}-{label}" if args.reuse_from and label != "after" else None
            if earlier is not None:
                runs[label] = _matrix(command, model, args.envs, earlier, run=False)
                continue
            flags = ["--no-reuse"] if label == "before" else []
            runs[label] = _matrix(command, model, args.envs, root / f"{model}-{label}", flags=flags)
            failed |= runs[label]["code"] != 0
        lines += _summary(model, args.envs, runs)
        # a wall time only counts when every cell ends as in the after run (a broken install is fast)
        failed |= any(run["statuses"] != runs["after"]["statuses"] for run in runs.values())
    print("\n".join(lines), flush=True)
    return 1 if failed else 0


def _summary(model: str, envs: str, runs: dict[str, dict[str, Any]]) -> list[str]:
    walls = {label: run["wall_s"] for label, run in runs.items()}
    after = walls["after"]
    names = {"filed": "when filed", "before": "before (--no-reuse)", "after": "after (reuse)"}
    lines = [
        f"{model}: 4 modes x {envs}, --jobs 1: "
        + ", ".join(f"{names[k]} {v:.1f} s" for k, v in walls.items())
    ]
    if "filed" in walls:
        ratio = after / walls["filed"]
        verdict = "within" if ratio <= BUDGET else "OVER"
        budget = f"the issue's budget, {BUDGET}x of the wall time when it was filed: {verdict}"
        lines.append(f"  after / when filed = {ratio:.2f}x ({budget})")
    lines.append(f"  after / before = {after / walls['before']:.2f}x (what reuse between modes alone saves)")
    for label, run in runs.items():
        counts = ", ".join(f"{status} {n}" for status, n in sorted(run["statuses"].items()))
        lines.append(f"  {label:6s} cells: {counts or 'none journaled'}")
        for env, stages in run["stages"].items():
            split = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in stages.items())
            lines.append(f"  {label:6s} {env:18s} {split} (s, summed over its cells)")
    for label in [k for k in ("before", "filed") if k in runs]:
        same, differ = _compare(runs[label]["tflite"], runs["after"]["tflite"])
        lines.append(f"  .tflite byte-identical {label}/after: {len(same)} of {len(same) + len(differ)}")
        lines += [f"    differs: {cell}" for cell in differ]
    return lines


def _install_revision(revision: str) -> Path:
    """The ``liteport`` command of ``revision`` of this checkout, installed once into a venv of its
    own under the cache (with this interpreter's torch and numpy, so pip never resolves CUDA torch)."""
    repo = Path(__file__).resolve().parents[2]
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    venv = default_cache_dir() / "bench" / f"liteport-{sha[:12]}"
    command, complete = venv / "bin" / "liteport", venv / ".complete"
    if complete.is_file():
        return command
    print(f"installing liteport at {sha[:12]} into {venv} (once)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)  # an install that stopped half-way
    # The source stays next to the venv: liteport builds its workers' overlay from the folder
    # it was installed from.
    source = venv / "src"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", sha], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"torch=={version('torch')}", f"numpy=={version('numpy')}"]
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pins, str(source)], check=True)
    complete.touch()  # last: a venv without it is rebuilt
    return command


def _matrix(
    liteport: str,
    model: str,
    envs: str,
    folder: Path,
    *,
    flags: tuple[str, ...] | list[str] = (),
    modes: str = MODES,
    run: bool = True,
) -> dict[str, Any]:
    out, work = folder / "report", folder / "work"
    argv = [liteport, "matrix", "--models", f"zoo:{model}", "--envs", envs, "--modes", modes]
    argv += ["--jobs", "1", "-o", str(out), "--workdir", str(work), *flags]
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
    statuses: Counter[str] = Counter()
    journal = out / "journal.jsonl"
    for line in journal.read_text(encoding="utf-8").splitlines() if journal.is_file() else []:
        attempt = json.loads(line)["attempt"]
        env = attempt["environment"]
        statuses[attempt["status"]] += 1
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
    return {"code": code, "wall_s": wall, "stages": stages, "tflite": tflite, "statuses": statuses}


def _compare(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    cells = sorted(set(before) | set(after))
    same = [c for c in cells if before.get(c) and before.get(c) == after.get(c)]
    return same, [c for c in cells if c not in same]


if __name__ == "__main__":
    sys.exit(main())
