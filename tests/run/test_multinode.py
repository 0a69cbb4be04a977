"""Two "nodes" on one host: Composer's launcher started twice (`--world_size 2 --nproc 1 --node_rank 0|1
--master_addr 127.0.0.1`, gloo), each node in its own mount and IPC namespace with a private tmpfs on /dev/shm
(streaming keeps node-local state there, so two nodes on one host would otherwise share it) and its own TMPDIR.
The save_folder is one plain directory both nodes see, as on NFS. See docs/scale-out.md "Multi-node" for what this proves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.helpers import (
    PROBED_RECIPE,
    REPO,
    free_port,
    missing_capability,
    recorded_batches,
    run_cli,
    tiny_args,
    train_losses,
)

pytestmark = pytest.mark.scaleout

# Each node: a private /dev/shm (tmpfs in a new mount namespace, with a new IPC namespace), then the launcher.
NODE_SHELL = 'mount -t tmpfs -o size=512m tmpfs /dev/shm && exec "$@"'
COMMON = ("save_interval=2ba", "eval_interval=1000ba", "eval_subset_num_batches=1", "run_name=multinode")


def unshare_problem() -> str | None:
    """Why this machine cannot give a simulated node its own /dev/shm, or None when it can."""
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--ipc", "sh", "-c", NODE_SHELL, "probe", "true"],
            capture_output=True, text=True, timeout=60,
        )
    except FileNotFoundError:
        return "`unshare` (util-linux) is not installed, so a simulated node cannot get its own /dev/shm"
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return (
            "a simulated node needs its own /dev/shm (`unshare --mount --ipc` plus a tmpfs mount), which needs "
            f"root here: {said}"
        )
    return None


@dataclass
class Node:
    returncode: int
    output: str  # the launcher's stdout and stderr (its local rank's output included)


def launch_two_nodes(workdir: Path, *args: str, env: dict[str, str], timeout: int = 300) -> list[Node]:
    """Two launcher processes on localhost, one per simulated node; both waited for, or killed at `timeout`."""
    workdir.mkdir(parents=True)
    composer = str(Path(sys.executable).parent / "composer")
    port = str(free_port())
    procs: list[subprocess.Popen] = []
    try:
        for node in range(2):
            (workdir / f"tmp{node}").mkdir()
            launcher = [composer, "--world_size", "2", "--nproc", "1", "--node_rank", str(node),
                        "--master_addr", "127.0.0.1", "--master_port", port]
            with open(workdir / f"node{node}.log", "w") as log:
                procs.append(subprocess.Popen(
                    ["unshare", "--mount", "--ipc", "sh", "-c", NODE_SHELL, f"node{node}", *launcher, *args],
                    cwd=REPO, env={**os.environ, **env, "TMPDIR": str(workdir / f"tmp{node}")},
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                ))
        deadline = time.monotonic() + timeout
        codes = [proc.wait(timeout=max(deadline - time.monotonic(), 1)) for proc in procs]
    finally:
        for proc in procs:  # on a timeout (or any error): the launcher and its rank, by process group
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [Node(code, (workdir / f"node{node}.log").read_text()) for node, code in enumerate(codes)]


def probed_env(record_dir: Path, **extra: str) -> dict[str, str]:
    record_dir.mkdir(parents=True)
    return {"PYTHONPATH": str(REPO), "REPO": str(REPO), "RECORD_DIR": str(record_dir), **extra}


def tail(nodes: list[Node]) -> str:
    return "\n".join(f"--- node {n}:\n{node.output[-2500:]}" for n, node in enumerate(nodes))


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    problem = unshare_problem()
    if problem:
        missing_capability(problem)
    path = tmp_path_factory.mktemp("probe") / "probed_pretrain.py"
    path.write_text(PROBED_RECIPE)
    return path


@pytest.fixture(scope="module")
def job(script, tiny_shards, tmp_path_factory) -> dict:
    """One job four ways, sharing the runs between tests: a 1-process reference of 12 batches; then on 2 nodes,
    killed (SIGKILL on both) at the end of batch 5; relaunched with the same command, which autoresumes from
    batch 4 and whose loss turns NaN on rank 1 only in batch 7; then continued to 12 batches on 1 node (elastic)
    from the last clean checkpoint (batch 6)."""
    root = tmp_path_factory.mktemp("multinode")
    save = root / "save"
    one = run_cli(
        str(script), *tiny_args(tiny_shards, root / "one", "max_duration=12ba", "data.num_canonical_nodes=2", *COMMON),
        env=probed_env(root / "rec-one"), timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two_node_args = (str(script), *tiny_args(tiny_shards, save, "max_duration=8ba", *COMMON))
    killed = launch_two_nodes(root / "killed", *two_node_args, env=probed_env(root / "rec-killed", KILL_AT_BATCH="5"))
    killed_files = sorted(path.name for path in save.iterdir())
    relaunched = launch_two_nodes(
        root / "relaunched", *two_node_args, env=probed_env(root / "rec-relaunched", NAN_AT_BATCH="6", NAN_RANK="1")
    )
    relaunched_files = sorted(path.name for path in save.iterdir())
    relaunched_latest = os.readlink(save / "latest-rank0.pt")
    elastic = run_cli(
        str(script), *tiny_args(tiny_shards, save, "max_duration=12ba", *COMMON),
        env=probed_env(root / "rec-elastic"), timeout=300,
    )
    return dict(root=root, save=save, killed=killed, killed_files=killed_files, relaunched=relaunched,
                relaunched_files=relaunched_files, relaunched_latest=relaunched_latest, elastic=elastic)


@pytest.mark.slow
def test_killed_on_both_nodes_then_relaunched_autoresumes(job):
    assert all(node.returncode == -signal.SIGKILL or "exited with code -9" in node.output for node in job["killed"])
    assert "ep0-ba4-rank0.pt" in job["killed_files"] and "ep0-ba6-rank0.pt" not in job["killed_files"]
    root = job["root"]
    killed, relaunched = recorded_batches(root / "rec-killed"), recorded_batches(root / "rec-relaunched")
    assert sorted(killed) == list(range(5))
    assert sorted(relaunched) == [4, 5, 6], "the relaunch did not resume from the batch-4 checkpoint"
    assert relaunched[4] == killed[4], "the replayed batch differs"


def test_nan_on_one_rank_stops_every_rank_at_the_same_batch(job):
    """Rank 1's loss turns NaN in batch 7: both nodes stop there with the same one-line error, and the newest
    checkpoint is the clean one before it (the elastic continuation below resumes from it)."""
    nodes = job["relaunched"]
    errors = [[line for line in node.output.splitlines() if line.startswith("error: ")] for node in nodes]
    assert all(node.returncode != 0 for node in nodes), tail(nodes)
    assert all(len(lines) == 1 and "not finite" in lines[0] for lines in errors), tail(nodes)
    assert all("in training batch 7 (after 6 completed batches" in lines[0] for lines in errors), errors
    assert "this rank: nan" in errors[1][0] and "this rank: nan" not in errors[0][0], errors
    assert job["relaunched_latest"] == "ep0-ba6-rank0.pt"
    assert not [name for name in job["relaunched_files"] if name.startswith(("ep0-ba7", "ep0-ba8"))]


def test_checkpoints_are_written_as_composer_writes_them_on_several_nodes(job):
    """Only global rank 0 writes (monolithic checkpoints), into the one shared folder; no signal files are left
    behind; each checkpoint carries the RNG state of both ranks."""
    files = job["relaunched_files"]
    assert not [name for name in files if "signal_file" in name], files
    checkpoints = [name for name in files if name.endswith(".pt")]
    assert {"ep0-ba4-rank0.pt", "ep0-ba6-rank0.pt", "latest-rank0.pt"} <= set(checkpoints), files
    assert all(name.endswith("-rank0.pt") for name in checkpoints), files
    checkpoint = torch.load(job["save"] / "ep0-ba6-rank0.pt", map_location="cpu", weights_only=False)
    assert len(checkpoint["rng"]) == 2, "a 2-node checkpoint holds every rank's RNG state"


def test_sample_order_and_masks_match_one_process_and_resume_elastically(job):
    """Every global batch of the 2-node job (with its kill, relaunch, NaN stop and 1-node continuation) holds
    exactly the rows and masks of an uninterrupted 1-process run with data.num_canonical_nodes=2; nothing is
    repeated or skipped. (streaming's default num_canonical_nodes is the first run's node count, kept on resume.)"""
    assert job["elastic"].returncode == 0, job["elastic"].stderr[-3000:]
    root = job["root"]
    expected = recorded_batches(root / "rec-one")
    assert sorted(expected) == list(range(12))
    elastic = recorded_batches(root / "rec-elastic")
    assert sorted(elastic) == list(range(6, 12))
    got = {**recorded_batches(root / "rec-killed"), **recorded_batches(root / "rec-relaunched"), **elastic}
    assert got == expected
    assert sorted(train_losses(job["save"])) == list(range(12))


@pytest.fixture(scope="module")
def budget_run(script, tiny_shards, tmp_path_factory) -> dict:
    """A 2-node run stopped by a 5-second wall-clock budget."""
    root = tmp_path_factory.mktemp("multinode-budget")
    args = tiny_args(tiny_shards, root / "save", "max_duration=100000ba", "budget=5s", *COMMON, "save_interval=100000ba")
    nodes = launch_two_nodes(root / "run", str(script), *args, env=probed_env(root / "rec"))
    return dict(root=root, nodes=nodes)


@pytest.mark.slow
def test_budget_stops_every_rank_after_the_same_batch(budget_run):
    assert all(node.returncode == 0 for node in budget_run["nodes"]), tail(budget_run["nodes"])
    root = budget_run["root"]
    ranks = [recorded_batches(root / "rec", rank) for rank in range(2)]
    last = max(ranks[0])
    assert sorted(ranks[0]) == sorted(ranks[1]) == list(range(last + 1))
    summary = json.loads((root / "save" / "summary.json").read_text())
    assert summary["batches"] == last + 1 and summary["budget_used"] >= 1.0, summary
    assert (root / "save" / f"ep0-ba{last + 1}-rank0.pt").is_file()
