"""Everything we want to know from a GPU, measured in one call of under 10 minutes, as a markdown block.

Sections (each in its own process with its own time budget, so a failure, a hang or a poisoned CUDA
context costs only that section; a failed one reports its one-line error and the rest still run):

- Environment: device, driver, torch/CUDA, our package, Composer and streaming versions, import checks.
- Correctness: tiny.yaml's model in bf16 autocast + torch.compile vs fp32 eager on the same batches, and
  which SDPA backend the training step really uses (profiler op names) and which ones run at all.
- Speed: crammed-bert.yaml's model at seq 128: tokens/s, MFU (`ComposerMLM.flops_per_batch` against the
  bf16 dense peak of composer_bert/run/peak_flops.py), peak memory and compile time, over a microbatch search.
- Same math and architecture: ours as original BERT vs transformers' BertForMaskedLM (sdpa) of BERT-base
  shape, and crammed-bert vs the same, through one timing loop (gpu_check_steps.py).
- Causal LM: minigpt-100m.yaml's model (seq 512) vs transformers' LlamaForCausalLM (sdpa) of the same config
  (`hf/llama.py`'s `llama_config`: same math): tokens/s, MFU, peak memory and the SDPA backend of each, and the
  ratio; then gpt2-124m.yaml's model at seq 1024 alone (gpu_check_causal.py).
- Loader stall: `build_trainer` of composer_bert/pretrain/trainer.py (the real Composer Trainer) on shards built here
  by data_prep/ from the synthetic corpus: share of step time blocked in next(dataloader).
- DDP: one step in 2 processes (NCCL) when there are 2 GPUs, else "skipped".
- ModernBERT: modernbert-base.yaml's model (local layers through SDPA with a band mask) against transformers'
  ModernBertForMaskedLM of the same config: fp32 logits on the device, then tokens/s and MFU of each and the
  ratio (gpu_check_modernbert.py). Last in RUN_ORDER, so the sections above keep their time;
  `--sections env,modernbert` runs it alone.

Time: the whole check stops within --budget (540 s: the device call's 600 s less the wheel install); a section
gets its own budget below or what is left, whichever is less, so the budgets (1160 s together) bound a hang and
are not what a section is expected to take. RUN_ORDER runs the single-compile sections first, then causal (its
ratio after two compiles, gpt2-124m's third only when the time left covers it), then compare (three compiles,
its transformers row last). A run cut short loses compare's tail first (the transformers row and so its ratios;
the rows measured before are shown), then causal's gpt2-124m row; `--sections env,compare` gets them back.

Here (no GPU), first: `python benchmarks/gpu_check.py --cpu-smoke --out /tmp/gpu_check.md` runs the same
code path at toy shapes on the CPU in a minute or two. Then `bash benchmarks/fetch_gpu_wheels.sh` puts the
wheels the GPU image lacks (benchmarks/gpu_wheels.txt) into .whl/, and on the device machine (tool `run`,
carry [".whl"], timeout_s 600) the command is:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; python3 benchmarks/gpu_check.py --out $OUT/gpu_check.md 2>$OUT/gpu_check.log; tail -c 4000 $OUT/gpu_check.log

(the whole log, tracebacks included, comes back as gpu_check.log even if the call is cut off).

The markdown goes to stdout and to --out (rewritten after every section, marked incomplete until the end),
ready to paste into benchmarks/RESULTS.md; progress lines with timestamps go to stderr. Exit status 0 when
every section ran, 1 when one failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from gpu_check_report import blocks

from composer_bert.errors import ArgumentParser, UserError, cli_entry
from composer_bert.run.files import atomic_file

REPO = Path(__file__).resolve().parent.parent
# Report order: name, heading, time budget in seconds on a GPU, with --cpu-smoke. The --cpu-smoke budgets only
# catch a hang: each is over 10x what the section took on a busy 2-core CPU (load 4-6: env 8 s, correctness 18,
# speed 11, compare 15, causal 14, loader 29, ddp 24; 132 s in all), so a slow machine is never taken for a hung one.
SMOKE_BUDGET_S = 1500.0  # --budget with --cpu-smoke: over 10x the 132 s of the whole smoke run
SECTIONS = (
    ("env", "Environment", 60, 120),
    ("correctness", "Correctness: bf16 autocast + torch.compile vs fp32 eager, and the SDPA backend", 120, 240),
    ("speed", "Speed: crammed-bert at seq 128", 170, 180),
    ("compare", "Same math and architecture vs transformers.BertForMaskedLM", 240, 240),
    ("causal", "Causal LM: minigpt-100m vs transformers.LlamaForCausalLM (same math), and gpt2-124m", 180, 240),
    ("loader", "Loader stall: the streaming loader under the Composer Trainer", 150, 360),
    ("ddp", "DDP: one step in 2 processes", 90, 300),
    ("modernbert", "ModernBERT: modernbert-base vs transformers.ModernBertForMaskedLM (same math)", 150, 240),
)
NAMES = [name for name, *_ in SECTIONS]
# causal before compare: its ratio comes after two compiles (compare's after three), and it is the GPU's open question
RUN_ORDER = ("env", "correctness", "speed", "loader", "ddp", "causal", "compare", "modernbert")


def stamp(message: str) -> None:
    start = float(os.environ["GPU_CHECK_T0"])
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - start:5.0f}s] {message}", file=sys.stderr, flush=True)


def run_section(name: str, args: argparse.Namespace, timeout: float, context: dict) -> dict:
    """One section in a child process of its own session (killed whole on timeout); its result from a JSON file."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--section", name, "--result", str(result_path),
                   "--deadline", str(time.time() + timeout), "--microbatches", args.microbatches]
        command += ["--cpu-smoke"] * args.cpu_smoke + (["--microbatch", str(context["best_microbatch"])]
                                                       if context.get("best_microbatch") else [])
        start = time.time()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True, cwd=REPO)
        tail: deque[str] = deque(maxlen=3)

        def forward() -> None:  # the child's output goes to our stderr; our stdout is the markdown
            for line in child.stdout:
                sys.stderr.write(line)
                if line.strip():
                    tail.append(line.strip())

        reader = threading.Thread(target=forward, daemon=True)
        reader.start()
        timed_out = False
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the section's own process group: its workers go too
            child.wait()
            timed_out = True
        reader.join(timeout=5)
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
        if not result or result.get("error") == "incomplete":  # killed or died: keep what it had saved
            why = f"timed out after {timeout:.0f} s (its budget)" if timed_out else f"its process died (exit {child.returncode})"
            result.update(ok=False, seconds=time.time() - start, error=f"{why}; last output: {tail[-1] if tail else 'none'}")
        return result


def render(args: argparse.Namespace, results: dict[str, dict], pending: list[str], started: float) -> str:
    env = results.get("env", {}).get("data", {})
    device = env.get("device_name") or ("CPU" if args.cpu_smoke else "unknown device")
    title = f"## GPU check: {device}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}"
    intro = [f"`python3 benchmarks/gpu_check.py{' --cpu-smoke' if args.cpu_smoke else ''}` at commit "
             f"{_commit()}, {time.time() - started:.0f} s in all."]
    if args.cpu_smoke:
        intro.append("CPU smoke run: toy shapes, fp32, no compile; the numbers only show that the code path works.")
    parts = [title, intro]
    for name, heading, *_ in SECTIONS:
        if name not in results:
            continue
        result = results[name]
        parts.append(f"### {heading}")
        if result.get("ok"):
            parts += [result["markdown"], f"_({result['seconds']:.0f} s)_"]
        else:
            parts.append(f"**FAILED** after {result.get('seconds', 0):.0f} s: {result['error']}")
            if result.get("markdown"):
                parts += ["What it measured before that:", result["markdown"]]
    if pending:
        parts.append(f"_Incomplete: {', '.join(pending)} not run yet._")
    return "\n".join(blocks(*parts)) + "\n"


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown here (e.g. $OUT/gpu_check.md)")
    parser.add_argument("--cpu-smoke", action="store_true", help="toy shapes on the CPU: check the code path, not speed")
    parser.add_argument("--sections", default=",".join(NAMES), help="comma-separated subset (default: all)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for everything (default 540; 1500 with --cpu-smoke)")
    parser.add_argument("--microbatches", default="64,128,256,512", help="the speed section's search (default: %(default)s)")
    parser.add_argument("--section", choices=NAMES, help=argparse.SUPPRESS)  # internal: run one section (child)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--microbatch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown or not wanted:
        raise UserError(f"--sections names {', '.join(unknown) or 'nothing'}; choose from {', '.join(NAMES)}")
    args.sections = [name for name in RUN_ORDER if name in wanted]
    try:
        sizes = [int(size) for size in args.microbatches.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(f"--microbatches '{args.microbatches}' must be positive integers separated by commas, e.g. 64,128")
    if args.out is not None and not args.out.parent.is_dir():
        raise UserError(f"--out {args.out}: folder {args.out.parent} does not exist; create it or pick another path")
    if args.budget is not None and args.budget <= 0:
        raise UserError(f"--budget {args.budget:g} must be a positive number of seconds, e.g. 540")
    args.budget = args.budget or (SMOKE_BUDGET_S if args.cpu_smoke else 540.0)
    return args


def child_main(args: argparse.Namespace) -> None:
    """Run one section; its markdown, data or one-line error go to --result as JSON."""
    import traceback

    import gpu_check_causal as causal
    import gpu_check_compare as compare
    import gpu_check_modernbert as modernbert
    import gpu_check_sections as sections
    import gpu_check_training as training
    from gpu_check_steps import Ctx, first_line, progress

    functions = {"env": sections.env_section, "correctness": sections.correctness_section,
                 "speed": sections.speed_section, "compare": compare.compare_section, "causal": causal.causal_section,
                 "loader": training.loader_section, "ddp": training.ddp_section,
                 "modernbert": modernbert.modernbert_section}
    ctx = Ctx(smoke=args.cpu_smoke, deadline=args.deadline,
              microbatches=(2, 4) if args.cpu_smoke else tuple(int(s) for s in args.microbatches.split(",")),
              microbatch=args.microbatch, result_path=str(args.result))
    start = time.time()
    try:
        payload = {"ok": True, **functions[args.section](ctx)}
    except Exception as err:  # the report carries the one line; the traceback goes to the log
        traceback.print_exc()
        payload = {"ok": False, "error": first_line(err)}
    payload["seconds"] = time.time() - start
    progress(f"{args.section}: {'done' if payload['ok'] else 'FAILED: ' + payload['error']} in {payload['seconds']:.0f} s")
    with atomic_file(args.result) as tmp:
        tmp.write_text(json.dumps(payload))


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.section:
        child_main(args)
        return 0
    started = time.time()
    os.environ["GPU_CHECK_T0"] = str(started)
    results: dict[str, dict] = {}
    context: dict = {}
    for index, name in enumerate(args.sections):
        budget = next(gpu if not args.cpu_smoke else smoke for n, _, gpu, smoke in SECTIONS if n == name)
        left = started + args.budget - time.time()
        if left < 15:
            results[name] = {"ok": False, "error": f"not run: the total budget of {args.budget:.0f} s was spent"}
        elif name != "env" and not args.cpu_smoke and context.get("cuda") is False:
            results[name] = {"ok": False, "error": "not run: no CUDA device here (use --cpu-smoke for the CPU path)"}
        else:
            stamp(f"{name}: start, budget {min(budget, left):.0f} s")
            results[name] = run_section(name, args, min(budget, left), context)
            context.update(results[name].get("data", {}))
        pending = args.sections[index + 1:]
        if args.out is not None and pending:  # so a call cut off at its limit still leaves what ran, marked so
            with atomic_file(args.out) as tmp:
                tmp.write_text(render(args, results, pending, started))
    markdown = render(args, results, [], started)
    if args.out is not None:
        with atomic_file(args.out) as tmp:
            tmp.write_text(markdown)
    print(markdown, end="", flush=True)
    failed = [name for name, result in results.items() if not result.get("ok")]
    stamp(f"finished in {time.time() - started:.0f} s; " + (f"failed: {', '.join(failed)}" if failed else "all sections ran"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
