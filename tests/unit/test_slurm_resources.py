"""A run's slurm { } block as sbatch options, its plan-time size checks against recorded
partition facts, the multi-node batch line and node specs, and the launcher's lookup of
the nodes' addresses (trainform.providers.slurm_resources, launcher.parse_node_addresses)."""

from __future__ import annotations

import pytest

from trainform.providers import slurm_cli as cli
from trainform.providers import slurm_resources as resources
from trainform.runs.launcher import LauncherError, parse_node_addresses

FACTS = {
    "partitions": {
        "debug": {"default": True, "state": "up", "nodes": 2, "cpus": 8, "memory_mb": 16000,
                  "gpus": 0},
        "gpu": {"default": False, "state": "up", "nodes": 1, "cpus": 16, "memory_mb": 64000,
                "gpus": 4},
        "old": {"default": False, "state": "down", "nodes": 4, "cpus": 4, "memory_mb": 1000,
                "gpus": 0},
    }
}  # fmt: skip
COMPUTE = {"facts": FACTS, "partition": "", "account": "proj", "qos": "normal"}


@pytest.mark.parametrize(
    ("text", "mb"), [("8g", 8192), ("512m", 512), ("1.5g", 1536), ("100k", 1), ("1t", 1 << 20)]
)
def test_memory_is_megabytes_rounded_up(text: str, mb: int) -> None:
    assert resources.memory_mb(text) == mb


@pytest.mark.parametrize("value", ["8000", 8000, "lots", "", "-1g"])
def test_memory_without_a_unit_or_not_a_size_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="512m"):
        resources.memory_mb(value)


def test_option_problems_name_the_option() -> None:
    problems = resources.option_problems({"tasks_per_node": 0, "cpus_per_task": 1.5, "memory": "9"})
    assert problems == [
        "slurm: tasks_per_node must be a whole number of at least 1, not 0",
        "slurm: cpus_per_task must be a whole number of at least 1, not 1.5",
        "slurm: memory = '9' needs a unit, such as 512m or 8g",
    ]
    assert resources.option_problems({"tasks_per_node": 2.0, "memory": "2g"}) == []


def test_a_request_that_fits_the_default_partition_has_no_problem() -> None:
    options = {"tasks_per_node": 2, "cpus_per_task": 4, "memory": "15g"}
    assert resources.size_problems(COMPUTE, 2, options) == []


def test_each_limit_is_named_with_the_partition() -> None:
    options = {"tasks_per_node": 4, "cpus_per_task": 4, "memory": "32g", "gpus_per_node": 1}
    assert resources.size_problems(COMPUTE, 3, options) == [
        "slurm: partition debug: it has 2 node(s), the run asks 3 (node_count)",
        "slurm: partition debug: largest node has 8 CPUs, the run asks 16 "
        "(tasks_per_node 4 x cpus_per_task 4)",
        "slurm: partition debug: largest node has 16000 MB of memory, the run asks 32768 MB "
        "(memory = '32g')",
        "slurm: partition debug: largest node has 0 GPUs, the run asks 1 (gpus_per_node)",
    ]


def test_the_runs_partition_wins_over_the_computes() -> None:
    assert resources.size_problems(COMPUTE, 1, {"partition": "gpu", "gpus_per_node": 4}) == []
    assert resources.size_problems(
        {**COMPUTE, "partition": "gpu"}, 1, {"partition": "debug", "gpus_per_node": 1}
    ) == ["slurm: partition debug: largest node has 0 GPUs, the run asks 1 (gpus_per_node)"]


def test_a_runs_partition_that_is_missing_or_down_is_refused() -> None:
    assert resources.size_problems(COMPUTE, 1, {"partition": "nope"}) == [
        "slurm: partition 'nope' does not exist on this Slurm cluster (partitions: debug, gpu, old)"
    ]
    assert resources.size_problems(COMPUTE, 1, {"partition": "old"}) == [
        "slurm: partition 'old' is down, not up: it takes no jobs"
    ]


def test_without_recorded_facts_nothing_is_checked() -> None:
    assert resources.size_problems({"partition": "gpu"}, 99, {"gpus_per_node": 99}) == []


def test_sbatch_options_take_the_block_and_the_computes_defaults() -> None:
    options = resources.sbatch_options(
        COMPUTE,
        2,
        {"tasks_per_node": 2, "cpus_per_task": 3, "memory": "2g", "exclusive": True,
         "qos": "high", "constraint": "a100"},
        max_duration=120.0,
    )  # fmt: skip
    lines = cli.sbatch_directives(options, job_name="j", output="/w/o")
    for line in (
        "--nodes=2",
        "--ntasks-per-node=2",
        "--cpus-per-task=3",
        "--mem=2048",
        "--exclusive",
        "--account=proj",
        "--qos=high",
        "--constraint=a100",
        "--time=0-00:02:00",
    ):
        assert f"#SBATCH {line}" in lines, lines
    assert not any(line.startswith("#SBATCH --partition") for line in lines), lines


def test_node_dirs_are_one_per_rank() -> None:
    assert resources.node_dirs("/w/runs/r", 1) == ["/w/runs/r"]
    assert resources.node_dirs("/w/runs/r", 3) == [f"/w/runs/r/nodes/{i}" for i in range(3)]


def test_launch_line_runs_one_launcher_per_node_under_srun() -> None:
    assert resources.launch_line("/w/lib", "/w/r", 1, {}) == "exec python3 /w/lib/launcher.py /w/r"
    line = resources.launch_line("/w/lib", "/w/r x", 2, {"tasks_per_node": 2, "cpus_per_task": 3})
    assert line == (
        "exec srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=6 "
        '--kill-on-bad-exit=1 sh -c \'exec python3 "$0" "$1/nodes/$SLURM_NODEID"\' '
        "/w/lib/launcher.py '/w/r x'"
    )
    assert "--cpus-per-task" not in resources.launch_line("/l", "/r", 2, {})


def test_node_specs_carry_the_rank_and_ask_the_launcher_for_the_addresses() -> None:
    spec = {"run_id": "r", "env_passthrough": ["HF_HOME"]}
    (single,) = resources.node_specs(spec, "r", 1)
    assert single["env_passthrough"] == ["HF_HOME", "SLURM_*"] and "node_addresses" not in single
    first, second = resources.node_specs({"run_id": "r", "env_passthrough": None}, "r", 2)
    assert second["node_addresses"] == "slurm"
    assert second["extra_env"]["NODE_RANK"] == "1" and first["extra_env"]["NODE_RANK"] == "0"
    assert second["extra_env"]["WORLD_SIZE"] == "2"
    assert first["extra_env"]["MASTER_PORT"] == second["extra_env"]["MASTER_PORT"]
    assert "MASTER_ADDR" not in second["extra_env"], second
    assert second["env_passthrough"] is None


def test_node_addresses_follow_the_hostnames_order() -> None:
    nodes = (
        "NodeName=gpu2 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.0.0.2 NodeHostName=gpu2\n"
        "NodeName=gpu1 Arch=x86_64 NodeAddr=gpu1.ib NodeHostName=gpu1 Port=6818\n"
    )
    assert parse_node_addresses("gpu1\ngpu2\n", nodes) == ["gpu1.ib", "10.0.0.2"]
    with pytest.raises(LauncherError, match="gpu3"):
        parse_node_addresses("gpu1\ngpu3\n", nodes)
    with pytest.raises(LauncherError):
        parse_node_addresses("", nodes)
