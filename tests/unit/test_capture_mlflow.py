"""The MLflow capture source (trainform/capture/mlflow.py) on MLflow file stores made by hand,
the way MLflow 2 and 3 lay them out, with what a hostile or careless script can put there:
garbage metric lines, a line still being written, MLflow 3's repeated lines, links out of the
store, a metric with more points than are kept in full, names with "/" and spaces, a stream
that cannot be written. Real MLflow runs are in tests/e2e/test_mlflow_capture.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trainform.capture import Stream
from trainform.capture import mlflow as capture


class Store:
    """A run folder with an MLflow file store in it, the source reading it, and what the
    source wrote and noted."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.root = run_dir / "mlruns"
        self.outputs = run_dir / "src" / "outputs"
        self.outputs.mkdir(parents=True)
        self.stream_path = run_dir / "metrics.jsonl"
        self.notes: list[str] = []
        self.source = capture.MlflowStore(
            self.root, self.outputs, Stream(self.stream_path), self.notes.append
        )
        self.now = 0.0

    def run(
        self,
        run_id: str,
        name: str,
        start: int,
        *,
        status: int = 1,
        parent: str | None = None,
        experiment: str = "1",
    ) -> Path:
        folder = self.root / experiment / run_id
        for sub in ("metrics", "params", "tags", "artifacts"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (self.root / experiment / "meta.yaml").write_text(f"experiment_id: '{experiment}'\n")
        (folder / "meta.yaml").write_text(
            f"artifact_uri: file:///somewhere/{run_id}/artifacts\nend_time: null\n"
            f"run_id: {run_id}\nrun_name: {name}\nstart_time: {start}\nstatus: {status}\n"
            "tags: []\n"
        )
        (folder / "tags" / "mlflow.runName").write_text(name)
        (folder / "tags" / "mlflow.user").write_text("someone")
        if parent:
            (folder / "tags" / "mlflow.parentRunId").write_text(parent)
        return folder

    def poll(self) -> None:
        self.now += 1.0
        self.source.poll(self.now)

    def lines(self) -> list[dict]:
        if not self.stream_path.exists():
            return []
        return [json.loads(line) for line in self.stream_path.read_text().splitlines()]

    def metrics(self) -> list[tuple[str, int | None, float | None]]:
        return [(r["name"], r["step"], r["value"]) for r in self.lines() if r["kind"] == "metric"]

    def named(self, kind: str) -> dict[str, str]:
        return {r["name"]: r["value"] for r in self.lines() if r["kind"] == kind}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "run dir")


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(text)


# -- setup: where MLflow is pointed


def test_setup_points_mlflow_at_a_file_store_in_the_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "a folder with spaces"
    env: dict[str, str] = {}
    notes: list[str] = []
    source = capture.setup(
        env,
        run_dir,
        run_dir / "out",
        "my experiment",
        "3.1.0",
        Stream(tmp_path / "m"),
        notes.append,
    )
    assert isinstance(source, capture.MlflowStore)
    assert env["MLFLOW_TRACKING_URI"] == (run_dir / "mlruns").as_uri()
    assert "%20" in env["MLFLOW_TRACKING_URI"], "spaces must be percent-encoded"
    assert env["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "my experiment"
    assert notes == ["MLflow 3.1.0: what the script logs is captured"]


def test_setup_keeps_an_experiment_the_user_chose(tmp_path: Path) -> None:
    for chosen in ({"MLFLOW_EXPERIMENT_NAME": "mine"}, {"MLFLOW_EXPERIMENT_ID": "7"}):
        env = dict(chosen)
        notes: list[str] = []
        capture.setup(env, tmp_path, tmp_path, "theirs", "2", Stream(tmp_path / "m"), notes.append)
        assert env.get("MLFLOW_EXPERIMENT_NAME") == chosen.get("MLFLOW_EXPERIMENT_NAME")


def test_a_user_set_tracking_uri_is_left_alone_and_noted_without_credentials(
    tmp_path: Path,
) -> None:
    uri = "https://alice:s3cret@mlflow.example.com:8443/api?token=abc123"
    env = {"MLFLOW_TRACKING_URI": uri}
    notes: list[str] = []
    source = capture.setup(
        env, tmp_path, tmp_path, "exp", "2.22.0", Stream(tmp_path / "m"), notes.append
    )
    assert source is None
    assert env == {"MLFLOW_TRACKING_URI": uri}
    assert len(notes) == 1
    assert "https://mlflow.example.com:8443" in notes[0]
    assert "trainform reads nothing from MLflow" in notes[0]
    for secret in ("alice", "s3cret", "token", "abc123", "/api"):
        assert secret not in notes[0]


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("databricks://profile:secret@workspace", "databricks://workspace"),
        ("file:///data/mlruns", "file:"),
        ("/data/mlruns", "a local path"),
        ("databricks", "databricks"),
        ("http://[::1", "a URI trainform cannot read"),
    ],
)
def test_where_a_tracking_uri_points_is_said_without_the_rest(uri: str, shown: str) -> None:
    assert capture.where(uri) == shown


# -- reading the store while the run runs


def test_metrics_params_and_tags_are_read_as_they_are_logged(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    store.poll()
    assert store.metrics() == []
    append(run / "metrics" / "loss", "1700000000000 0.5 0\n1700000000100 0.25 1\n")
    (run / "params" / "lr").write_text("0.1")
    (run / "tags" / "team").write_text("vision")
    store.poll()
    assert store.metrics() == [("loss", 0, 0.5), ("loss", 1, 0.25)]
    points = [r for r in store.lines() if r["kind"] == "metric"]
    assert points[0]["time"] == 1700000000.0 and points[0]["source"] == "mlflow"
    assert store.named("param") == {"lr": "0.1"}
    # mlflow.* tags are MLflow's bookkeeping: only the useful ones are kept.
    assert store.named("tag") == {"mlflow.runName": "main", "team": "vision"}

    # Appends are read from where the last poll stopped; a line still being written waits.
    append(run / "metrics" / "loss", "1700000000200 0.125 2\n1700000000300 0.06")
    store.poll()
    assert store.metrics()[-1] == ("loss", 2, 0.125)
    append(run / "metrics" / "loss", "25 3\n")
    store.poll()
    assert store.metrics()[-1] == ("loss", 3, 0.0625)
    # A tag set again is read again; an unchanged one is not written twice.
    (run / "tags" / "team").write_text("audio")
    store.poll()
    store.poll()
    tags = [(r["name"], r["value"]) for r in store.lines() if r["kind"] == "tag"]
    assert tags.count(("team", "audio")) == 1 and tags.count(("mlflow.runName", "main")) == 1


def test_garbage_lines_are_skipped_and_counted(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    append(
        run / "metrics" / "acc",
        "1700000000000 0.5 0\n"
        "not a metric line\n"
        "1700000000000 0.6 1 a b c d\n"
        "1700000000000 abc 2\n"
        "\n"
        "1700000000000 0.7 3.5\n" + "9" * 5000 + " 1 1\n"
        "\x00\xff garbage\n"
        "1700000000000 0.9 4\n"
        "1700000000000 0.95\n",  # MLflow 1.x lines had no step
    )
    store.source.finish()
    assert store.metrics() == [("acc", 0, 0.5), ("acc", 4, 0.9), ("acc", 0, 0.95)]
    assert any("skipped 6 unreadable line(s)" in n for n in store.notes), store.notes


def test_mlflow_3_lines_with_a_model_id_and_a_dataset_are_read(store: Store) -> None:
    """MLflow 3's autolog writes its training metrics as "<ms> <value> <step> <dataset name>
    <digest>" (and a model id before them in a model's files)."""
    run = store.run("r1", "main", 1000)
    append(
        run / "metrics" / "training_score",
        "1700000000000 0.98 0 dataset 5cba2f89\n1700000000001 0.99 1 m-1 dataset 5cba2f89\n",
    )
    store.source.finish()
    assert store.metrics() == [("training_score", 0, 0.98), ("training_score", 1, 0.99)]
    assert not any("unreadable" in n for n in store.notes), store.notes


def test_non_finite_values_and_names_with_slashes_and_spaces(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    append(run / "metrics" / "train" / "loss per batch", "1700000000000 nan 0\n")
    append(run / "metrics" / "weird", "1 inf 0\n2 -inf 1\n3 Infinity 2\n4 NaN 3\n")
    (run / "params" / "opt").mkdir()
    (run / "params" / "opt" / "learning rate").write_text("1e-3")
    store.poll()
    lines = {(r["name"], r["step"]): r for r in store.lines() if r["kind"] == "metric"}
    assert lines[("train/loss per batch", 0)]["value"] is None
    assert lines[("train/loss per batch", 0)]["nonfinite"] == "nan"
    assert [lines[("weird", s)]["nonfinite"] for s in range(4)] == ["inf", "-inf", "inf", "nan"]
    assert store.named("param") == {"opt/learning rate": "1e-3"}


def test_mlflow_3_repeated_lines_are_dropped(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    append(run / "metrics" / "loss", "10 1.0 0\n11 0.5 1\n12 0.25 2\n")
    store.poll()
    # What MLflow 3's log_model appends: lines already there, repeated.
    append(run / "metrics" / "loss", "10 1.0 0\n12 0.25 2\n13 0.125 3\n")
    store.source.finish()
    assert store.metrics() == [
        ("loss", 0, 1.0),
        ("loss", 1, 0.5),
        ("loss", 2, 0.25),
        ("loss", 3, 0.125),
    ]


def test_a_metric_keeps_its_first_points_then_one_in_a_hundred_and_its_last(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    total = capture.FULL_POINTS + 350
    append(run / "metrics" / "many", "".join(f"1700000000000 {i} {i}\n" for i in range(total)))
    store.poll()  # a bounded part
    store.source.finish()  # the rest
    steps = [s for _, s, _ in store.metrics()]
    assert steps[: capture.FULL_POINTS] == list(range(capture.FULL_POINTS))
    assert steps[capture.FULL_POINTS :] == [
        capture.FULL_POINTS + 99,
        capture.FULL_POINTS + 199,
        capture.FULL_POINTS + 299,
        total - 1,
    ]
    assert sum("more than 100000 points" in n for n in store.notes) == 1, store.notes


def test_each_poll_reads_a_bounded_amount(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    line = "1700000000000 0.5 {}\n"
    count = 2 * capture.FILE_BUDGET // len(line.format(10000))  # fewer than FULL_POINTS
    append(run / "metrics" / "m", "".join(line.format(i) for i in range(count)))
    store.poll()
    first = len(store.metrics())
    assert 0 < first < count
    store.source.finish()
    assert len(store.metrics()) == count


def test_links_in_the_store_are_never_followed(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "metrics").mkdir(parents=True)
    (outside / "metrics" / "stolen").write_text("1 42 0\n")
    (outside / "secret").write_text("top secret")
    run = store.run("r1", "main", 1000)
    append(run / "metrics" / "loss", "1 1.0 0\n")
    (run / "metrics" / "linked").symlink_to(outside / "metrics" / "stolen")
    (run / "metrics" / "folder").symlink_to(outside / "metrics", target_is_directory=True)
    (run / "params" / "secret").symlink_to(outside / "secret")
    (run / "tags" / "secret").symlink_to(outside / "secret")
    # A whole run folder and an experiment folder that are links.
    (store.root / "1" / "r9").symlink_to(run, target_is_directory=True)
    (store.root / "9").symlink_to(store.root / "1", target_is_directory=True)
    (run / "artifacts" / "model.txt").write_text("weights")
    (run / "artifacts" / "escape").symlink_to(outside / "secret")
    (run / "artifacts" / "escape-dir").symlink_to(outside, target_is_directory=True)

    store.poll()
    store.source.finish()
    assert store.metrics() == [("loss", 0, 1.0)]
    assert store.named("param") == {}
    assert "top secret" not in store.stream_path.read_text()
    moved = store.outputs / "mlflow" / "runs" / "main"
    assert (moved / "model.txt").read_text() == "weights"
    assert sorted(os.listdir(moved)) == ["model.txt"], "links are left out of the outputs"
    assert (outside / "secret").read_text() == "top secret"
    assert any("left out 2 symbolic link(s)" in n for n in store.notes), store.notes


def test_a_store_folder_replaced_by_a_link_is_not_read(store: Store, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    real = Store(elsewhere)
    run = real.run("r1", "main", 1000)
    append(run / "metrics" / "loss", "1 1.0 0\n")
    store.root.symlink_to(real.root, target_is_directory=True)
    store.poll()
    store.source.finish()
    assert store.metrics() == []
    assert sum("symbolic link" in n for n in store.notes) == 1, store.notes


# -- several MLflow runs in one trainform run


def test_the_first_run_is_the_runs_own_and_the_others_are_prefixed(store: Store) -> None:
    main = store.run("a1", "main", 1000)
    append(main / "metrics" / "loss", "1 0.5 0\n")
    store.poll()
    child = store.run("b2", "fold", 2000, parent="a1")
    again = store.run("c3", "fold", 3000, parent="a1")
    second = store.run("d4", "eval run", 4000, status=3)
    for folder, value in ((child, 1.0), (again, 2.0), (second, 3.0)):
        append(folder / "metrics" / "loss", f"1 {value} 0\n")
        (folder / "params" / "lr").write_text(str(value))
    store.poll()
    assert sorted(store.metrics()) == [
        ("eval run/loss", 0, 3.0),
        ("fold-2/loss", 0, 2.0),
        ("fold/loss", 0, 1.0),
        ("loss", 0, 0.5),
    ]
    assert store.named("param") == {"fold/lr": "1.0", "fold-2/lr": "2.0", "eval run/lr": "3.0"}
    assert store.named("tag")["fold-2/mlflow.runName"] == "fold"
    store.source.finish()
    assert any("'main' is this run's" in n and "fold/, fold-2/" in n for n in store.notes)


def test_two_runs_met_in_one_poll_the_earliest_is_the_runs_own(store: Store) -> None:
    later = store.run("aaa", "second", 2000, experiment="0")
    first = store.run("zzz", "first", 1000, experiment="5")
    append(later / "metrics" / "m", "1 2.0 0\n")
    append(first / "metrics" / "m", "1 1.0 0\n")
    store.poll()
    assert sorted(store.metrics()) == [("m", 0, 1.0), ("second/m", 0, 2.0)]


def test_a_run_that_ended_is_read_once_more_then_only_at_the_finish(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    append(run / "metrics" / "loss", "1 1.0 0\n")
    store.poll()
    append(run / "metrics" / "loss", "2 0.5 1\n")
    text = (run / "meta.yaml").read_text().replace("status: 1", "status: 3")
    (run / "meta.yaml").write_text(text + "end_time: 99\n")
    store.poll()
    assert store.metrics() == [("loss", 0, 1.0), ("loss", 1, 0.5)]
    append(run / "metrics" / "loss", "3 0.25 2\n")  # MlflowClient can log to an ended run
    store.poll()
    assert len(store.metrics()) == 2
    store.source.finish()
    assert store.metrics()[-1] == ("loss", 2, 0.25)


def test_a_half_written_meta_yaml_is_read_again_later(store: Store) -> None:
    folder = store.root / "1" / "r1"
    (folder / "metrics").mkdir(parents=True)
    (folder / "meta.yaml").write_text("artifact_uri: file:///x\nend_time: nu")
    append(folder / "metrics" / "loss", "1 1.0 0\n")
    store.poll()
    assert store.metrics() == []
    (folder / "meta.yaml").write_text("run_id: r1\nrun_name: 'it''s mine'\nstart_time: 5\n")
    store.poll()
    assert store.metrics() == [("loss", 0, 1.0)]
    store.source.finish()


# -- artifacts and logged models when the run has ended


MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
    loader_module: mlflow.sklearn
  sklearn:
    pickled_model: model.pkl
mlflow_version: 2.22.0
"""


def test_artifacts_are_moved_into_the_outputs_and_models_listed(store: Store) -> None:
    main = store.run("a1", "main", 1000)
    (main / "artifacts" / "reports").mkdir()
    (main / "artifacts" / "reports" / "summary.txt").write_text("good")
    (main / "artifacts" / "model").mkdir()
    (main / "artifacts" / "model" / "MLmodel").write_text(MLMODEL)  # an MLflow 2 model
    child = store.run("b2", "fold/1", 2000, parent="a1")
    (child / "artifacts" / "plot.png").write_bytes(b"\x89PNG")
    # An MLflow 3 logged model of the child run.
    logged = store.root / "1" / "models" / "m-1"
    (logged / "artifacts").mkdir(parents=True)
    (logged / "meta.yaml").write_text(
        "model_id: m-1\nname: classifier\nsource_run_id: b2\nstatus: 2\n"
    )
    (logged / "artifacts" / "MLmodel").write_text(MLMODEL.replace("sklearn", "xgboost"))
    store.poll()
    inode = (main / "artifacts" / "reports" / "summary.txt").stat().st_ino
    store.source.finish()

    base = store.outputs / "mlflow"
    moved = base / "runs" / "main" / "reports" / "summary.txt"
    assert moved.read_text() == "good"
    assert moved.stat().st_ino == inode, "artifacts are moved, not copied"
    assert not (main / "artifacts").exists()
    assert (base / "runs" / "fold_1" / "plot.png").read_bytes() == b"\x89PNG"
    assert (base / "models" / "classifier" / "MLmodel").is_file()
    models = [r for r in store.lines() if r["kind"] == "model"]
    assert [(m["name"], m["path"], m["flavors"]) for m in models] == [
        ("model", "mlflow/runs/main/model", ["python_function", "sklearn"]),
        ("fold/1/classifier", "mlflow/models/classifier", ["python_function", "xgboost"]),
    ]


def test_an_outputs_folder_replaced_by_a_link_gets_no_artifacts(
    store: Store, tmp_path: Path
) -> None:
    run = store.run("a1", "main", 1000)
    (run / "artifacts" / "a.txt").write_text("a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store.outputs / "mlflow").symlink_to(elsewhere, target_is_directory=True)
    store.source.finish()
    assert list(elsewhere.iterdir()) == []
    assert (run / "artifacts" / "a.txt").is_file()
    assert any("is not a folder: artifacts left in" in n for n in store.notes), store.notes


def test_names_become_folder_names_that_stay_inside() -> None:
    assert capture._folder_name("a/b") == "a_b"
    assert capture._folder_name("..") == "_.."
    assert capture._folder_name(".hidden") == "_.hidden"
    assert capture._folder_name("") == "_"
    assert len(capture._folder_name("x" * 500)) == 100


# -- a source that fails does not stop the run


def test_a_failing_source_is_switched_off_with_one_note(store: Store) -> None:
    run = store.run("r1", "main", 1000)
    append(run / "metrics" / "loss", "1 1.0 0\n")
    store.stream_path.mkdir()  # the stream cannot be written
    store.poll()
    store.poll()
    store.source.finish()
    assert len(store.notes) == 1 and "MLflow capture stopped" in store.notes[0], store.notes
