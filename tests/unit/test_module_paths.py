"""Path attributes in a module follow one rule, read from the schema's ``path`` mark: what
the configuration provides (source folders, requirements, Dockerfiles, SSH keys) is relative
to the module's folder (path.module); where trainform writes (artifact stores, workdirs) is
relative to the root configuration, beside its state."""

from __future__ import annotations

from pathlib import Path

from trainform.config import schema as S
from trainform.config.evaluate import Evaluator
from trainform.config.loader import function_context, load_module, resource_schema
from trainform.config.values import UNKNOWN

MODULE = """
workspace "ml" {
  artifact_store = "store"
}

compute "box" {
  type    = "local"
  workdir = "work"
}

compute "far" {
  type             = "ssh"
  address          = "127.0.0.1"
  username         = "me"
  private_key_file = "keys/id"
  known_hosts      = "~/.ssh/known_hosts"
}

environment "img" {
  docker {
    dockerfile    = "docker/Dockerfile"
    build_context = "/abs/context"
  }
}

run "train" {
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
  experiment = "e"
}
"""


def evaluated(tmp_path: Path) -> dict[str, dict]:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "main.train.hcl").write_text(
        'module "m" {\n  source = "../modules/m"\n}\n'
    )
    (tmp_path / "modules" / "m").mkdir(parents=True)
    (tmp_path / "modules" / "m" / "main.train.hcl").write_text(MODULE)
    module = load_module(tmp_path / "root")
    evaluator = Evaluator(module, {}, function_context(module))

    def unknown(inst):
        return {k: UNKNOWN for k, a in inst.resource.schema.attributes.items() if a.computed}

    out = evaluator.run(unknown)
    return {a: i.attributes for a, i in out.instances.items()}


def test_provided_files_follow_the_module_and_written_places_the_root(tmp_path: Path) -> None:
    attrs = evaluated(tmp_path)
    up = "../modules/m/"
    assert attrs["module.m.run.train"]["source_dir"] == up + "src"
    assert attrs["module.m.compute.far"]["private_key_file"] == up + "keys/id"
    assert attrs["module.m.compute.far"]["known_hosts"] == "~/.ssh/known_hosts"
    docker = attrs["module.m.environment.img"]["docker"]
    docker = docker[0] if isinstance(docker, list) else docker
    assert docker["dockerfile"] == up + "docker/Dockerfile"
    assert docker["build_context"] == "/abs/context"
    assert attrs["module.m.workspace.ml"]["artifact_store"] == "store"
    assert attrs["module.m.compute.box"]["workdir"] == "work"


def test_every_path_attribute_is_marked() -> None:
    """Attributes whose names say they are paths carry a mark, so none is left out of the
    rule by accident."""
    kinds = [("workspace", ""), ("environment", ""), ("run", ""), ("sweep", "")]
    kinds += [("compute", t) for t in ("local", "ssh", "docker-cluster")]
    unmarked = []

    def walk(where: str, sch: S.BlockSchema) -> None:
        for name, attr in sch.attributes.items():
            pathlike = name.endswith(("_file", "_dir", "dockerfile", "_context", "_store"))
            if pathlike and not attr.computed and not attr.path:
                unmarked.append(f"{where}.{name}")
            if name in ("workdir", "hyperdrive_config") and not attr.path and "ssh" not in where:
                unmarked.append(f"{where}.{name}")
        for name, nested in sch.blocks.items():
            walk(f"{where}.{name}", nested.schema)

    for kind, provider in kinds:
        walk(f"{kind}{'.' + provider if provider else ''}", resource_schema(kind, provider))
    # paths on the compute target, inside the run's folder there: not local files
    on_target = {"run.outputs_dir", "sweep.trial.outputs_dir"}
    assert sorted(set(unmarked) - on_target) == []
