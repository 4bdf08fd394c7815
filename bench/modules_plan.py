"""How `validate` and `plan` scale with a module called with for_each over N teams, against the
same resources written without modules (flat).

    python bench/modules_plan.py               # 1, 10, 50, 200 teams
    python bench/modules_plan.py 10 200        # chosen sizes
    python bench/modules_plan.py --repeat 5    # median of 5 instead of 3
    python bench/modules_plan.py --baseline /tmp/old/.venv/bin/python   # before -> after

Each team has a local compute, an environment and a run whose source folder (`teams/NAME/`)
holds three files: 3 resources per team, plus one workspace. In the "modules" layout, a root
module block with `for_each` over the teams calls `modules/team`, which calls a nested module
(`modules/render`) that renders the environment's variables; locals use `merge`,
`formatlist`, `templatefile` and a `%{for}` template. The "flat" layout declares the same
resources with `for_each` at the root and the same functions inline, so the difference is the
cost of the modules themselves.

For each size and layout it measures, as the median of REPEAT runs, the wall time, the CPU
time (user + system) and the peak RSS (MiB, the largest of the runs) of: `trainform validate`;
`trainform plan` with a fresh state (everything to create); and, after `apply` (each run's
script prints one line), a `plan` with nothing to do. The overhead of modules over flat is
given on CPU time, which other work on the machine disturbs less than wall time. With
--baseline, another trainform's interpreter (the venv of another checkout) measures the same
configurations, interleaved run by run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT_MODULES = """
locals {{
  teams       = {{ {teams} }}
  common_tags = {{ project = "bench", owner = "ml-platform" }}
}}

workspace "bench" {{
  description = "modules benchmark"
}}

module "team" {{
  source   = "./modules/team"
  for_each = local.teams

  name          = each.key
  learning_rate = each.value.lr
  tags          = local.common_tags
}}

output "runs" {{
  value = {{ for name, team in module.team : name => team.run_id }}
}}
"""

TEAM_MODULE = """
variable "name" {
  type = string
}

variable "learning_rate" {
  type = number
  validation {
    condition     = var.learning_rate > 0 && var.learning_rate <= 1
    error_message = "learning_rate must be in (0, 1]"
  }
}

variable "tags" {
  type    = map(string)
  default = {}
}

locals {
  tags  = merge(var.tags, { team = var.name })
  flags = formatlist("--%s=%s", keys(local.tags), values(local.tags))
}

module "render" {
  source = "../render"
  name   = var.name
  tags   = local.tags
}

compute "box" {
  type = "local"
  tags = local.tags
}

environment "env" {
  python       = "python3"
  user_managed = true
  variables    = module.render.variables
}

run "train" {
  experiment  = "team-${var.name}"
  compute     = compute.box
  environment = environment.env
  source_dir  = "${path.root}/teams/${var.name}"
  script      = "train.py"
  arguments   = concat(["--lr", var.learning_rate], local.flags)
  tags        = local.tags
}

output "run_id" {
  value = run.train.run_id
}
"""

RENDER_MODULE = """
variable "name" {
  type = string
}

variable "tags" {
  type = map(string)
}

locals {
  hosts   = templatefile("${path.module}/hosts.tpl", { name = var.name, nodes = ["a", "b", "c"] })
  summary = "%{ for k, v in var.tags }${k}=${v};%{ endfor }"
}

output "variables" {
  value = { HOSTS = local.hosts, SUMMARY = local.summary, TEAM = upper(var.name) }
}
"""

HOSTS_TEMPLATE = """%{ for i, node in nodes ~}
${name}-${node} slot=${i}
%{ endfor ~}
"""

ROOT_FLAT = """
locals {{
  teams       = {{ {teams} }}
  common_tags = {{ project = "bench", owner = "ml-platform" }}
  tags        = {{ for name, team in local.teams : name => merge(local.common_tags, {{ team = name }}) }}
}}

workspace "bench" {{
  description = "modules benchmark"
}}

compute "box" {{
  type     = "local"
  for_each = local.teams
  tags     = local.tags[each.key]
}}

environment "env" {{
  for_each     = local.teams
  python       = "python3"
  user_managed = true
  variables = {{
    HOSTS   = templatefile("${{path.module}}/hosts.tpl", {{ name = each.key, nodes = ["a", "b", "c"] }})
    SUMMARY = "%{{ for k, v in local.tags[each.key] }}${{k}}=${{v}};%{{ endfor }}"
    TEAM    = upper(each.key)
  }}
}}

run "train" {{
  for_each    = local.teams
  experiment  = "team-${{each.key}}"
  compute     = compute.box[each.key]
  environment = environment.env[each.key]
  source_dir  = "teams/${{each.key}}"
  script      = "train.py"
  arguments = concat(
    ["--lr", each.value.lr],
    formatlist("--%s=%s", keys(local.tags[each.key]), values(local.tags[each.key])),
  )
  tags = local.tags[each.key]
}}

output "runs" {{
  value = {{ for name, run in run.train : name => run.run_id }}
}}
"""

SOURCE_FILES = {
    "train.py": "print('trained {name}')\n",
    "config.yaml": "epochs: 1\nbatch_size: 32\n",
    "data.py": "def load():\n    return []\n",
}


def write_config(folder: Path, layout: str, n: int) -> None:
    """Write the configuration of `layout` ("modules" or "flat") for n teams into folder."""
    names = [f"t{i:03d}" for i in range(n)]
    teams = ", ".join(
        f"{name} = {{ lr = {0.1 + (i % 9) / 10:.1f} }}" for i, name in enumerate(names)
    )
    for name in names:
        (folder / "teams" / name).mkdir(parents=True)
        for file, text in SOURCE_FILES.items():
            (folder / "teams" / name / file).write_text(text.replace("{name}", name))
    if layout == "flat":
        (folder / "main.train.hcl").write_text(ROOT_FLAT.format(teams=teams))
        (folder / "hosts.tpl").write_text(HOSTS_TEMPLATE)
        return
    (folder / "main.train.hcl").write_text(ROOT_MODULES.format(teams=teams))
    (folder / "modules" / "team").mkdir(parents=True)
    (folder / "modules" / "team" / "main.train.hcl").write_text(TEAM_MODULE)
    (folder / "modules" / "render").mkdir(parents=True)
    (folder / "modules" / "render" / "main.train.hcl").write_text(RENDER_MODULE)
    (folder / "modules" / "render" / "hosts.tpl").write_text(HOSTS_TEMPLATE)


def run(args: list[str], cwd: Path, python: str) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak RSS in MiB, exit code of one trainform invocation."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec trainform so that its rusage is ours alone
        os.chdir(cwd)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execv(python, [python, "-m", "trainform", *args])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


# (label, arguments, expected exit code, state: "fresh" or "applied")
STEPS = [
    ("validate", ["validate"], 0, "fresh"),
    ("plan (fresh)", ["plan", "--detailed-exitcode"], 2, "fresh"),
    ("plan (no change)", ["plan", "--detailed-exitcode"], 0, "applied"),
]


Figures = tuple[float, float, int]  # median wall seconds, median CPU seconds, peak MiB


def measure(folder: Path, pythons: list[str], repeat: int, state: str) -> dict[str, list[Figures]]:
    """The figures of the steps that need `state`, per interpreter."""
    results: dict[str, list[Figures]] = {}
    for label, args, expected, needs in STEPS:
        if needs != state:
            continue
        walls: list[list[float]] = [[] for _ in pythons]
        cpus: list[list[float]] = [[] for _ in pythons]
        rss = [0 for _ in pythons]
        for _ in range(repeat):
            for i, python in enumerate(pythons):
                wall, cpu, peak, code = run(args, folder, python)
                if code != expected:
                    raise SystemExit(f"{label} in {folder} exited {code}, expected {expected}")
                walls[i].append(wall)
                cpus[i].append(cpu)
                rss[i] = max(rss[i], peak)
        results[label] = [
            (statistics.median(w), statistics.median(c), r) for w, c, r in zip(walls, cpus, rss)
        ]
    return results


def bench(n: int, layout: str, pythons: list[str], repeat: int) -> dict[str, list[Figures]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_config(folder, layout, n)
        results = measure(folder, pythons, repeat, "fresh")
        subprocess.run(
            [pythons[-1], "-m", "trainform", "apply", "--auto-approve", "--parallelism", "16"],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results.update(measure(folder, pythons, repeat, "applied"))
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1, 10, 50, 200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", metavar="PYTHON", help="another trainform's interpreter")
    args = parser.parse_args()
    pythons = [args.baseline, sys.executable] if args.baseline else [sys.executable]
    tags = ["baseline ", ""] if args.baseline else [""]
    width = 26 if args.baseline else 17
    print(f"{'':<{width + 17}}{'flat':<22}{'modules':<22}")
    header = f"{'teams':>6} {'resources':>9} {'step':<{width}}"
    header += f"{'wall s':>7} {'CPU s':>6} {'MiB':>5}   " * 2 + f"{'overhead (CPU)':>14}"
    print(header)
    for n in args.sizes:
        flat = bench(n, "flat", pythons, args.repeat)
        modules = bench(n, "modules", pythons, args.repeat)
        for label, _, _, _ in STEPS:
            for i, tag in enumerate(tags):
                (fw, fc, fm), (mw, mc, mm) = flat[label][i], modules[label][i]
                print(
                    f"{n:>6} {3 * n + 1:>9} {tag + label:<{width}}"
                    f"{fw:>7.2f} {fc:>6.2f} {fm:>5}   {mw:>7.2f} {mc:>6.2f} {mm:>5}   "
                    f"{(mc / fc - 1) * 100:>+13.0f}%",
                    flush=True,
                )


if __name__ == "__main__":
    main()
