"""The host side of a run in a container: ``python -m trainform.runs.container RUN_DIR``.

A compute provider that runs work in containers (local compute with an environment's
``docker`` block) prepares the run folder as for any run, adds ``container.json`` (see
:func:`container_plan`) and starts this module detached. It then:

1. builds the image from its Dockerfile if the engine does not have its tag yet (one build
   per tag at a time, under a lock), writing the build's output into ``output.log`` as
   ``[build]`` lines; or checks that a named image is present (nothing is ever pulled);
2. points the spec's environment cache at a folder keyed by the image id, so virtualenvs
   built inside containers are never shared with host-built ones;
3. creates the container (the invoking uid:gid, the run folder and the few folders the
   launcher reads bind-mounted at the same paths, the resources of the docker block) and
   starts the launcher inside it, with ``docker-init`` as PID 1 so signals reach it;
4. waits for the container; SIGTERM/SIGINT/SIGHUP (a cancel) are forwarded to the launcher,
   which stops its process group; so is the end of the sweep controller it watches (``watch_pid``);
5. records an outcome if the launcher could not (it failed to start, was killed, ran out of
   memory), then removes the container.

Its own diagnostics go to ``supervisor.log``. The run's status is final only once this
process has exited (the provider reports a launcher's final status while the container is
still being removed as not final yet), so nothing is left behind once a run is over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from trainform.runs.images import BUILD_PREFIX, TAIL_LINES
from trainform.runs.launcher import (
    FINAL_STATUSES,
    OUTPUT_LOG,
    SPEC_FILE,
    process_running,
    read_status,
    write_status,
)

PLAN_FILE = "container.json"
SUPERVISOR_LOG = "supervisor.log"
_POLL_SECONDS = 0.25
# After a forwarded cancel, how long beyond the run's grace period to wait before SIGKILL.
_STOP_MARGIN_SECONDS = 20.0


class _Canceled(BaseException):
    """A signal arrived while the image was being built or checked."""


class _Failed(Exception):
    """The run cannot start; the message is meant for the user."""


def container_name(run_id: str) -> str:
    return f"trainform-{run_id}"


def container_plan(
    *,
    run_dir: Path,
    image: dict[str, Any],
    launcher: Path,
    mounts: list[tuple[str, str]],
    envs_root: Path,
    slots_dir: Path,
    labels: dict[str, str],
    user: str,
    engine: str | None = None,
) -> dict[str, Any]:
    """What ``container.json`` holds: the image settings (see
    :func:`trainform.runs.images.image_settings`), the launcher's path, extra bind mounts
    (path, mode), where environment caches live (one folder per image id under
    ``envs_root``), labels and the user to run as."""
    return {
        "run_dir": str(run_dir),
        "name": container_name(run_dir.name),
        "image": image,
        "launcher": str(launcher),
        "mounts": [[str(p), m] for p, m in mounts],
        "envs_root": str(envs_root),
        "slots_dir": str(slots_dir),
        "labels": labels,
        "user": user,
        "engine": engine,
    }


def _append(run_dir: Path, text: str) -> None:
    fd = os.open(str(run_dir / OUTPUT_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    finally:
        os.close(fd)


class _Supervisor:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.plan: dict[str, Any] = json.loads((run_dir / PLAN_FILE).read_text())
        self.log = open(run_dir / SUPERVISOR_LOG, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self.signals = 0
        self.phase = "preparing"  # preparing: a signal cancels at once; running: it is forwarded
        self.client: Any = None
        self.container: Any = None
        self.watch_pid: int | None = None
        self.grace = 10.0
        self.cache_dir = Path(self.plan["envs_root"])

    def diag(self, message: str) -> None:
        self.log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        self.diag(f"received {signal.Signals(signum).name}")
        if self.phase == "preparing":
            self.phase = "finishing"
            raise _Canceled()

    def fail(self, message: str) -> int:
        """Record the run as failed; the log gets the message's first line (the rest, such
        as a build's last lines, is in the log already)."""
        self.phase = "finishing"
        _append(self.run_dir, f"[trainform] run failed: {message.splitlines()[0]}\n")
        write_status(
            self.run_dir, status="failed", message=message, finished=_now(), exit_code=None
        )
        return 1

    def main(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            return self._main()
        except _Canceled:
            self.phase = "finishing"
            self._remove()
            status = read_status(self.run_dir)
            if status.get("status") not in FINAL_STATUSES:
                _append(self.run_dir, "[trainform] run canceled before it started\n")
                write_status(
                    self.run_dir,
                    status="canceled",
                    message="canceled before the container started",
                    finished=_now(),
                )
            return 1
        except _Failed as exc:
            self._remove()
            return self.fail(str(exc))
        except Exception as exc:
            self.diag(traceback.format_exc())
            self._remove()
            return self.fail(
                f"container supervisor error: {type(exc).__name__}: {exc} "
                f"(details in {SUPERVISOR_LOG})"
            )
        finally:
            self.log.close()

    def _main(self) -> int:
        from trainform.errors import TrainformError
        from trainform.remote.docker import connect

        self.diag(f"supervisor pid {os.getpid()} for {self.plan['name']}")
        try:
            self.client = connect(self.plan.get("engine"))
        except TrainformError as exc:
            raise _Failed(str(exc)) from None
        image = self._image()
        self._prepare_spec(image)
        self._create(image)
        return self._wait()

    # -- the image
    def _image(self) -> Any:
        """The image to run: built if it has a build and is missing; never pulled."""
        from trainform.runs.images import image_present, missing_image_message

        settings = self.plan["image"]
        name = settings["image"]
        build = settings.get("build")
        if build is None:
            if not image_present(self.client, name):
                raise _Failed(missing_image_message(name))
            return self.client.images.get(name)
        lock_dir = Path(self.plan["envs_root"]).parent / "images"
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(str(lock_dir / f"{build['hash'][:12]}.lock"), os.O_RDWR | os.O_CREAT)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                write_status(self.run_dir, message=f"waiting for another build of {name}")
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if image_present(self.client, name):
                self.diag(f"image {name} is already built")
                return self.client.images.get(name)
            self._build(name, build)
            return self.client.images.get(name)
        finally:
            os.close(lock_fd)

    def _build(self, name: str, build: dict[str, Any]) -> None:
        from trainform.remote.docker import LABEL
        from trainform.runs.images import BuildLog, stream_build

        write_status(self.run_dir, status="preparing", message=f"building image {name}")
        _append(self.run_dir, f"{BUILD_PREFIX} building image {name} from {build['dockerfile']}\n")
        log = BuildLog(lambda line: _append(self.run_dir, line))
        labels = {**self.plan["labels"], LABEL: "1"}
        labels.pop("trainform.run_id", None)
        error = stream_build(self.client.api, name, build, labels, log)
        if error:
            raise _Failed(log.failure(error))
        log.feed("\n")
        _append(self.run_dir, f"{BUILD_PREFIX} built image {name}\n")

    # -- the container
    def _prepare_spec(self, image: Any) -> None:
        """Point the launcher's spec at this image's environment cache and the shared slots;
        the sweep controller's pid is watched from here (it is not visible inside)."""
        spec_path = self.run_dir / SPEC_FILE
        spec = json.loads(spec_path.read_text())
        image_id = str(image.id).split(":", 1)[-1][:12]
        cache_dir = Path(self.plan["envs_root"]) / f"image-{image_id}"
        cache_dir.mkdir(parents=True, exist_ok=True)
        Path(self.plan["slots_dir"]).mkdir(parents=True, exist_ok=True)
        spec["environment"] = {**spec.get("environment", {}), "cache_dir": str(cache_dir)}
        if spec.get("slots"):
            spec["slots"] = {**spec["slots"], "dir": self.plan["slots_dir"]}
        self.watch_pid = spec.pop("watch_pid", None)
        self.grace = float(spec.get("grace_seconds") or 10.0)
        self.cache_dir = cache_dir
        tmp = spec_path.with_name(SPEC_FILE + ".tmp")
        tmp.write_text(json.dumps(spec, indent=1))
        tmp.replace(spec_path)

    def _create(self, image: Any) -> None:
        from docker.errors import DockerException
        from docker.types import Mount

        from trainform.remote.docker import short_error
        from trainform.runs.images import container_options

        plan = self.plan
        run_dir = plan["run_dir"]
        # Mount objects rather than "src:dst:mode" strings: a path may hold a colon.
        mounts = [
            Mount(path, path, type="bind", read_only=mode == "ro")
            for path, mode in [
                [run_dir, "rw"],
                *plan["mounts"],
                [str(self.cache_dir), "rw"],
                [plan["slots_dir"], "rw"],
            ]
        ]
        try:
            options = container_options(plan["image"])
        except ValueError as exc:
            raise _Failed(f"docker settings: {exc}") from None
        try:
            self.container = self.client.containers.create(
                image.id,
                command=["python3", plan["launcher"], run_dir],
                name=plan["name"],
                labels=plan["labels"],
                user=plan["user"],
                working_dir=run_dir,
                environment={"HOME": "/tmp", "TRAINFORM_IMAGE": plan["image"]["image"]},
                mounts=mounts,
                init=True,
                detach=True,
                **options,
            )
        except DockerException as exc:
            raise _Failed(
                f"cannot create the container from image {plan['image']['image']}: "
                f"{short_error(exc)}"
            ) from None
        self.diag(f"created container {self.container.name} ({self.container.id[:12]})")
        self.phase = "running"  # from now on a signal is forwarded to the launcher
        pending = self.signals
        try:
            self.container.start()
        except DockerException as exc:
            raise _Failed(
                f"cannot start the launcher in image {plan['image']['image']} (it needs "
                f"python3 on its PATH): {short_error(exc)}"
            ) from None
        _append(
            self.run_dir,
            f"[trainform] running in container {plan['name']} (image {plan['image']['image']})\n",
        )
        if pending:
            self.signals = pending  # a cancel that arrived while creating is forwarded below

    def _wait(self) -> int:
        from docker.errors import DockerException, NotFound

        forwarded = 0
        kill_at: float | None = None
        while True:
            reason = ""
            if self.signals > forwarded:
                reason = "canceled"
            elif self.watch_pid and not forwarded and not process_running(int(self.watch_pid)):
                reason = f"the sweep controller (pid {self.watch_pid}) is gone"
                self.signals += 1
            if reason:
                self.diag(f"forwarding SIGTERM to the launcher: {reason}")
                forwarded = self.signals
                with contextlib.suppress(DockerException):
                    self.container.kill(signal="SIGTERM")
                if kill_at is None:
                    kill_at = time.monotonic() + self.grace + _STOP_MARGIN_SECONDS
            if kill_at is not None and time.monotonic() > kill_at:
                self.diag("the launcher did not stop in time: killing the container")
                with contextlib.suppress(DockerException):
                    self.container.kill()
                kill_at = None
            try:
                self.container.reload()
            except NotFound:
                self.phase = "finishing"
                write_status(
                    self.run_dir,
                    container_gone=f"the container {self.plan['name']} was removed while the "
                    "run was going",
                )
                self.diag("the container is gone")
                return 1
            state = self.container.attrs.get("State") or {}
            if state.get("Status") in ("exited", "dead"):
                break
            time.sleep(_POLL_SECONDS)
        self.phase = "finishing"
        code = int(state.get("ExitCode") or 0)
        self.diag(f"container exited with {code}")
        status = read_status(self.run_dir)
        result = 0 if status.get("status") == "completed" else 1
        if status.get("status") not in FINAL_STATUSES:
            lines = self._container_tail()
            if state.get("OOMKilled"):
                why = f"ran out of memory (memory = {self.plan['image'].get('memory')})"
            else:
                why = f"exited with code {code} before the launcher recorded an outcome"
            result = self.fail(
                f"the container {why}" + (f"; its last lines:\n{lines}" if lines else "")
            )
        self._remove()
        return result

    def _container_tail(self) -> str:
        with contextlib.suppress(Exception):
            data = self.container.logs(tail=TAIL_LINES)
            return data.decode("utf-8", "replace").strip()
        return ""

    def _remove(self) -> None:
        if self.container is None:
            return
        from docker.errors import DockerException, NotFound

        try:
            self.container.remove(force=True)
            self.diag("container removed")
        except NotFound:
            pass
        except DockerException as exc:
            self.diag(f"cannot remove the container: {exc}")
        self.container = None


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def main(argv: list[str]) -> int:
    """Supervise the container run in ``argv[0]`` (its folder) to its end; blocks. Returns 0
    when the run completed, 1 otherwise, 2 for a bad command line."""
    if len(argv) != 1 or not (Path(argv[0]) / PLAN_FILE).is_file():
        sys.stderr.write(f"usage: python -m trainform.runs.container RUN_DIR (with {PLAN_FILE})\n")
        return 2
    return _Supervisor(Path(argv[0]).resolve()).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
