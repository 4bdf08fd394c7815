"""Per-type schemas: the attributes and nested blocks a block takes.

A schema drives validation ("did you mean"), type conversion, defaults, which attributes are
sensitive (stored only as salted hashes), which force replacement, and the reference docs.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from trainform.config.values import UNKNOWN


@dataclass(frozen=True)
class Attribute:
    """One attribute of a block.

    ``type`` is one of ``string``, ``number``, ``bool``, ``list(string)``, ``list(number)``,
    ``map(string)``, ``list``, ``map``, ``any``. ``computed`` attributes are set by the provider,
    never by the user (facts, ids, paths).

    ``path`` marks an attribute that names a local file or folder. ``"module"``: one the
    configuration provides (a source folder, a requirements file, a key), relative to the
    folder of the module that declares the block (``path.module``), so a module carries its
    files with it. ``"root"``: a place trainform writes to (an artifact store, a workdir),
    relative to the root configuration, beside its state, so that two configurations using
    one module folder never share what they write.
    """

    type: str = "string"
    required: bool = False
    default: Any = None
    sensitive: bool = False
    force_new: bool = False
    computed: bool = False
    # A user attribute whose value other blocks read as the provider recorded it: a run's
    # ``outputs`` are paths in its block and content ids in ``run.prep.outputs["x"]``.
    published: bool = False
    allowed: tuple[Any, ...] = ()
    description: str = ""
    path: str = ""


@dataclass(frozen=True)
class BlockSchema:
    """Attributes and nested blocks of a block type (nested block -> (schema, labels, many))."""

    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: dict[str, NestedBlock] = field(default_factory=dict)
    description: str = ""
    open_attributes: bool = False  # `locals`: any attribute name is accepted

    def user_attributes(self) -> dict[str, Attribute]:
        return {k: a for k, a in self.attributes.items() if not a.computed}

    def published(self) -> list[str]:
        """The attributes other blocks read as the provider recorded them: the computed ones
        and the ``published`` user attributes."""
        return [k for k, a in self.attributes.items() if a.computed or a.published]


@dataclass(frozen=True)
class NestedBlock:
    schema: BlockSchema
    labels: int = 0
    many: bool = False
    force_new: bool = False
    description: str = ""


def did_you_mean(name: str, candidates: list[str] | set[str] | tuple[str, ...]) -> str:
    """A "did you mean ..." hint for a misspelt name, or ``""``."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else ""


def check_type(value: Any, type_name: str) -> tuple[Any, str]:
    """Convert ``value`` to ``type_name`` the way HCL does (numbers to strings and back).

    Returns ``(converted, "")`` or ``(value, error message)``. Unknown values pass.
    """
    if value is UNKNOWN or value is None or type_name == "any":
        return value, ""
    if type_name == "string":
        if isinstance(value, bool):
            return ("true" if value else "false"), ""
        if isinstance(value, (int, float)):
            return _num_str(value), ""
        if isinstance(value, str):
            return value, ""
        return value, f"expected a string, got {type_of(value)}"
    if type_name == "number":
        if isinstance(value, bool):
            return value, "expected a number, got bool"
        if isinstance(value, (int, float)):
            return value, ""
        if isinstance(value, str):
            try:
                num = float(value)
            except ValueError:
                return value, f"expected a number, got string {value!r}"
            return (int(num) if num.is_integer() and "." not in value else num), ""
        return value, f"expected a number, got {type_of(value)}"
    if type_name == "bool":
        if isinstance(value, bool):
            return value, ""
        if value in ("true", "false"):
            return value == "true", ""
        return value, f"expected a bool, got {type_of(value)}"
    if type_name.startswith("list"):
        if not isinstance(value, list):
            return value, f"expected a list, got {type_of(value)}"
        inner = type_name[5:-1] if "(" in type_name else "any"
        out = []
        for i, item in enumerate(value):
            conv, err = check_type(item, inner)
            if err:
                return value, f"element {i}: {err}"
            out.append(conv)
        return out, ""
    if type_name.startswith("map"):
        if not isinstance(value, dict):
            return value, f"expected a map, got {type_of(value)}"
        inner = type_name[4:-1] if "(" in type_name else "any"
        outm = {}
        for k, item in value.items():
            conv, err = check_type(item, inner)
            if err:
                return value, f"key {k!r}: {err}"
            outm[k] = conv
        return outm, ""
    raise ValueError(f"unknown schema type {type_name}")


def type_of(value: Any) -> str:
    """The HCL name of a value's type, for messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    if value is None:
        return "null"
    return type(value).__name__


def _num_str(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


LIFECYCLE = BlockSchema(
    attributes={
        "prevent_destroy": Attribute("bool", default=False, description="Refuse to destroy."),
        "ignore_changes": Attribute(
            "list", default=[], description="Attributes whose changes are not planned."
        ),
        "create_before_destroy": Attribute(
            "bool", default=False, description="On replacement, create the new one first."
        ),
    },
    blocks={
        name: NestedBlock(
            BlockSchema(
                attributes={
                    "condition": Attribute("any", required=True, description="Must be true."),
                    "error_message": Attribute(required=True, description="Shown if false."),
                }
            ),
            many=True,
            description=f"A condition checked {when}.",
        )
        for name, when in (
            ("precondition", "before the resource's change is planned"),
            ("postcondition", "after the resource is created or updated"),
        )
    },
    description="How trainform treats changes to this resource.",
)

META_ATTRIBUTES = {
    "count": Attribute("number", description="Create this many instances (`count.index`)."),
    "for_each": Attribute("any", description="One instance per map key or set element."),
    "depends_on": Attribute("list", description="Explicit dependencies (resource addresses)."),
}

WORKSPACE = BlockSchema(
    attributes={
        "description": Attribute(description="Free text."),
        "artifact_store": Attribute(
            force_new=True,
            path="root",
            description="Folder for snapshots, logs and outputs "
            "(default `.trainform/workspaces/<name>` beside the configuration).",
        ),
        "tags": Attribute("map(string)", default={}, description="Labels."),
        "force_destroy": Attribute(
            "bool",
            default=False,
            description="Allow destroying a workspace that holds run history.",
        ),
        "mlflow_tracking_uri": Attribute(
            description="An MLflow tracking server (http(s)://HOST[:PORT]) that every run of "
            "this workspace is exported to as it finishes (credentials from "
            "MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN, never in the URI).",
        ),
        "path": Attribute(computed=True, description="Absolute path of the artifact store."),
        "id": Attribute(computed=True, description="Workspace id."),
    },
    description="A workspace: an artifact store and a run registry.",
)

ENVIRONMENT = BlockSchema(
    attributes={
        "python": Attribute(
            default="python3", description="Interpreter: command name, path, or version like 3.11."
        ),
        "user_managed": Attribute("bool", default=False, description="Use the interpreter as is."),
        "pip": Attribute("list(string)", default=[], description="Requirement strings."),
        "requirements_file": Attribute(path="module", description="A pip requirements file."),
        "conda_file": Attribute(path="module", description="A conda environment file."),
        "variables": Attribute("map(string)", default={}, description="Environment variables."),
        "hash": Attribute(
            computed=True, description="Content hash that keys the built environment."
        ),
    },
    blocks={
        "docker": NestedBlock(
            BlockSchema(
                attributes={
                    "image": Attribute(
                        description="Image to run in; must be on the engine (never pulled)."
                    ),
                    "dockerfile": Attribute(
                        path="module",
                        description="Dockerfile to build (relative to the configuration); the "
                        "image is tagged trainform-env:<hash of the build context>.",
                    ),
                    "build_context": Attribute(
                        path="module",
                        description="Build context folder (default: the Dockerfile's folder).",
                    ),
                    "build_args": Attribute("map(string)", default={}, description="Build args."),
                    "gpus": Attribute("any", description='"all" or a count.'),
                    "shm_size": Attribute(description='Shared memory size, such as "1g".'),
                    "cpus": Attribute("number", description="CPU limit, such as 2 or 0.5."),
                    "memory": Attribute(description='Memory limit, such as "2g".'),
                }
            ),
            description="Run inside a container.",
        )
    },
    description="A Python environment, materialised per target when a run needs it.",
)

RUN = BlockSchema(
    attributes={
        "experiment": Attribute(required=True, description="Experiment name."),
        "workspace": Attribute("any", description="The workspace that records the run."),
        "compute": Attribute(
            "any", description="Where the run executes: a compute block, e.g. compute.gpu."
        ),
        "environment": Attribute("any", description="The environment it runs in."),
        "source_dir": Attribute(
            default=".", path="module", description="Folder snapshotted for the run."
        ),
        "script": Attribute(description="Python file to run (relative to source_dir)."),
        "command": Attribute("list(string)", description="Argument vector to run instead."),
        "arguments": Attribute("list", default=[], description="Arguments (strings, numbers)."),
        "env": Attribute("map(string)", default={}, description="Environment variables."),
        "env_passthrough": Attribute(
            "list(string)",
            description="Of the environment the run would inherit, only these names and "
            'prefixes ("CUDA_*"); PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ and TMPDIR always '
            "pass. Unset: all of it. TRAINFORM_* and TF_VAR_* never pass.",
        ),
        "max_duration": Attribute(description='Time limit such as "90s" or "2h".'),
        "node_count": Attribute("number", default=1, description="Nodes for a multi-node run."),
        "metrics": Attribute(
            "map",
            default={},
            description="Metric name -> regex with one group, scraped from log lines, or "
            '{ pattern = "...", lines = N } to match the newest N lines (N <= 10) joined by \\n.',
        ),
        "outputs_dir": Attribute(default="outputs", description="Folder collected as outputs."),
        "outputs": Attribute(
            "map(string)",
            published=True,
            description="Named outputs: name -> a path in the run's folder, inside outputs_dir "
            '(features = "outputs/features"). Other runs take them as inputs '
            '(run.NAME.outputs["features"]); a declared output the run did not produce fails it.',
        ),
        "inputs": Attribute(
            "map",
            description='Data the run reads: name -> dataset.NAME or run.NAME.outputs["x"]. '
            "Found at TRAINFORM_INPUT_<NAME>, read-only; their content is in the fingerprint.",
        ),
        "input_mode": Attribute(
            default="copy",
            allowed=("copy", "link"),
            description="copy: the inputs are placed in the run's folder (linked to the "
            "target's blob store where the file system allows, never written); link: a "
            "dataset whose source already sits on the target's file system is used in place.",
        ),
        "input_args": Attribute(
            "bool",
            default=False,
            description="Also pass each input as `--NAME PATH` after the arguments.",
        ),
        "tags": Attribute("map(string)", default={}, description="Labels."),
        "wait": Attribute("bool", default=True, description="Wait for the run to finish."),
        "grace_period": Attribute(
            default="10s", description="Between SIGTERM and SIGKILL when a run is stopped."
        ),
        "run_id": Attribute(computed=True, description="Id of the latest run."),
        "fingerprint": Attribute(
            computed=True, description="Hash of everything that decides the result."
        ),
        "status": Attribute(
            computed=True, description="queued, preparing, running, completed, ..."
        ),
        "snapshot_id": Attribute(computed=True, description="Manifest id of the source snapshot."),
        "snapshot_files": Attribute("number", computed=True, description="Files in the snapshot."),
        "exit_code": Attribute("number", computed=True, description="Exit code of the command."),
        "outputs_path": Attribute(computed=True, description="Where the outputs were collected."),
    },
    blocks={
        "compute": NestedBlock(
            BlockSchema(open_attributes=True),
            description="Compute created for this run alone and destroyed when it ends "
            '(compute { type = "docker-cluster" ... }), instead of compute = compute.NAME.',
        ),
        "slurm": NestedBlock(
            BlockSchema(
                attributes={
                    "tasks_per_node": Attribute("number", description="--ntasks-per-node."),
                    "gpus_per_node": Attribute("number", description="--gpus-per-node."),
                    "cpus_per_task": Attribute("number", description="--cpus-per-task."),
                    "memory": Attribute(description='Memory per node (--mem), such as "8g".'),
                    "exclusive": Attribute(
                        "bool", default=False, description="Whole nodes (--exclusive)."
                    ),
                    "partition": Attribute(description="Instead of the compute's partition."),
                    "account": Attribute(description="Instead of the compute's account."),
                    "qos": Attribute(description="Instead of the compute's qos."),
                    "constraint": Attribute(description="Instead of the compute's constraint."),
                }
            ),
            description="What the run's Slurm job asks for (slurm compute only). Resource "
            "requests: a change does not resubmit a finished run.",
        ),
        "spark": NestedBlock(
            BlockSchema(
                attributes={
                    "deploy_mode": Attribute(
                        default="client",
                        description="client (the driver runs under the launcher), or cluster "
                        "where the cluster manager runs Python drivers (YARN, Kubernetes).",
                    ),
                    "num_executors": Attribute("number", description="--num-executors."),
                    "executor_cores": Attribute("number", description="--executor-cores."),
                    "executor_memory": Attribute(description='--executor-memory, such as "2g".'),
                    "driver_memory": Attribute(description='--driver-memory, such as "1g".'),
                    "conf": Attribute(
                        "map(string)", default={}, description="spark.* settings (--conf)."
                    ),
                    "packages": Attribute(
                        "list(string)", default=[], description="Maven coordinates (--packages)."
                    ),
                    "py_files": Attribute(
                        "list(string)",
                        default=[],
                        description="Zips, eggs or .py files of the snapshot (--py-files; its "
                        "Python files are shipped anyway).",
                    ),
                }
            ),
            description="How the run's Spark application is submitted (spark compute only). "
            "Part of the fingerprint, except executor_memory and driver_memory.",
        ),
    },
    description="A training run: snapshotted, launched, watched; its logs, metrics and outputs "
    "collected.",
)

VARIABLE = BlockSchema(
    attributes={
        "type": Attribute("any", description="Type constraint: string, number, bool, list(T), ..."),
        "default": Attribute("any", description="Value when none is given."),
        "description": Attribute(description="Shown in prompts and docs."),
        "sensitive": Attribute(
            "bool", default=False, description="Never shown or stored in clear."
        ),
        "nullable": Attribute("bool", default=True, description="Whether null is accepted."),
    },
    blocks={
        "validation": NestedBlock(
            BlockSchema(
                attributes={
                    "condition": Attribute("any", required=True),
                    "error_message": Attribute(required=True),
                }
            ),
            many=True,
        )
    },
)

OUTPUT = BlockSchema(
    attributes={
        "value": Attribute("any", required=True, description="The value."),
        "description": Attribute(description="Free text."),
        "sensitive": Attribute("bool", default=False, description="Hide the value."),
    }
)

BACKENDS = {
    "sqlite": BlockSchema(
        attributes={"path": Attribute(description="State database (default .trainform/state.db).")}
    ),
    "pg": BlockSchema(
        attributes={
            "conn_str": Attribute(
                sensitive=True,
                description="PostgreSQL connection string (else TRAINFORM_PG_CONN_STR or "
                "PG_CONN_STR).",
            ),
            "schema_name": Attribute(
                description='Schema for trainform\'s tables (default "trainform").'
            ),
        }
    ),
}
"""State backends (``backend "KIND" { ... }``) and the attributes each takes."""

SETTINGS = BlockSchema(
    attributes={"required_version": Attribute(description="Accepted trainform versions.")},
    blocks={
        "backend": NestedBlock(
            BlockSchema(
                attributes={k: a for b in BACKENDS.values() for k, a in b.attributes.items()}
            ),
            labels=1,
        ),
        "required_providers": NestedBlock(BlockSchema(open_attributes=True)),
    },
)

LOCALS = BlockSchema(open_attributes=True)


def _trial_schema() -> BlockSchema:
    """A sweep's trial template: the attributes of a run that decide how a trial runs."""
    keep = (
        "compute",
        "environment",
        "source_dir",
        "script",
        "command",
        "arguments",
        "env",
        "env_passthrough",
        "node_count",
        "metrics",
        "outputs_dir",
        "grace_period",
        "tags",
        "inputs",
        "input_mode",
        "input_args",
    )
    attrs = {k: RUN.attributes[k] for k in keep}
    attrs["max_duration"] = Attribute(
        description="Per-trial limit (limits.trial_max_duration wins)."
    )
    return BlockSchema(attributes=attrs, description="The run template of every trial.")


SWEEP = BlockSchema(
    attributes={
        "experiment": Attribute(required=True, description="Experiment name."),
        "workspace": Attribute("any", description="The workspace that records the trials."),
        "hyperdrive_config": Attribute(
            path="module",
            description="An Azure ML HyperDrive YAML file giving sampling, policy, objective "
            "and limits (trial {} still gives the script and compute).",
        ),
        "slurm_array": Attribute(
            "bool",
            default=False,
            description="Submit the trials as one job array (a slurm compute; grid sampling, "
            "or random without early_termination).",
        ),
        "sweep_id": Attribute(computed=True, description="Id of the latest sweep."),
        "fingerprint": Attribute(computed=True, description="Hash of template, space and policy."),
        "status": Attribute(computed=True, description="running, completed, canceled, failed."),
        "best_trial": Attribute(computed=True, description="Run id of the best trial."),
        "best_value": Attribute("number", computed=True, description="Its objective value."),
        "best_params": Attribute("map", computed=True, description="Its parameters."),
    },
    blocks={
        "trial": NestedBlock(_trial_schema(), description="The run template."),
        "sampling": NestedBlock(
            BlockSchema(
                attributes={
                    "algorithm": Attribute(
                        default="random",
                        allowed=("random", "grid", "bayesian"),
                        description="random, grid or bayesian.",
                    ),
                    "seed": Attribute("number", description="Seed for reproducible sampling."),
                }
            )
        ),
        "parameter": NestedBlock(
            BlockSchema(
                attributes={
                    "distribution": Attribute(required=True, description="choice, uniform, ..."),
                    "values": Attribute("list", description="choice: the values."),
                    "upper": Attribute("number", description="randint: exclusive upper bound."),
                    "min": Attribute("number"),
                    "max": Attribute("number"),
                    "q": Attribute("number", description="Quantisation step."),
                    "mu": Attribute("number"),
                    "sigma": Attribute("number"),
                }
            ),
            labels=1,
            many=True,
        ),
        "objective": NestedBlock(
            BlockSchema(
                attributes={
                    "metric": Attribute(required=True, description="The primary metric."),
                    "goal": Attribute(default="maximize", allowed=("maximize", "minimize")),
                }
            )
        ),
        "early_termination": NestedBlock(
            BlockSchema(
                attributes={
                    "policy": Attribute(
                        default="none",
                        allowed=("bandit", "median_stopping", "truncation_selection", "none"),
                    ),
                    "slack_factor": Attribute("number"),
                    "slack_amount": Attribute("number"),
                    "evaluation_interval": Attribute("number", default=1),
                    "delay_evaluation": Attribute("number", default=0),
                    "truncation_percentage": Attribute("number"),
                }
            )
        ),
        "limits": NestedBlock(
            BlockSchema(
                attributes={
                    "max_total_runs": Attribute("number", description="Trials in all."),
                    "max_concurrent_runs": Attribute("number", description="Trials at once."),
                    "max_duration": Attribute(description="The sweep's own time limit."),
                    "trial_max_duration": Attribute(description="Each trial's time limit."),
                }
            )
        ),
    },
    description="A hyperparameter sweep: many trials of one run template over a search space.",
)

DATASET = BlockSchema(
    attributes={
        "source": Attribute(
            required=True,
            description="A folder or file on this machine (relative to the configuration), "
            'or an http(s) URL with sha256, or "ssh://HOST/PATH" on a compute\'s host '
            '(input_mode = "link" only).',
        ),
        "sha256": Attribute(description="The sha256 of an http(s) source (required there)."),
        "compute": Attribute(
            "any",
            description="For an ssh:// source: the ssh compute (compute.NAME) whose host holds "
            "the data; runs on that compute use it in place.",
        ),
        "description": Attribute(description="Free text."),
        "id": Attribute(computed=True, description="The content id (hash of the manifest)."),
        "files": Attribute("number", computed=True, description="Files in the dataset."),
        "bytes": Attribute("number", computed=True, description="Total size in bytes."),
    },
    description="Data runs read: content-addressed (a manifest of file hashes), moved to a "
    "target once and shared by every run there.",
)

RESOURCE_KINDS = ("workspace", "compute", "environment", "dataset", "run", "sweep")
TOP_LEVEL_LABELS = {
    "trainform": 0,
    "variable": 1,
    "locals": 0,
    "output": 1,
    "workspace": 1,
    "compute": 1,
    "environment": 1,
    "dataset": 1,
    "run": 1,
    "sweep": 1,
    "module": 1,
    "moved": 0,
    "removed": 0,
    "import": 0,
    "check": 1,
}
