"""The OTA agent: runs model_update and rollback commands one at a time, reporting every state."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.messages import CommandMessage, ModelUpdate, Rollback, UpdateMessage, UpdateState
from contracts.model_package import PackageError, version_key
from edge_node.inference import Classifier, ModelHolder
from edge_node.model_store import InstalledModel, ModelStore, ModelStoreError
from edge_node.ota.download import DownloadError, DownloadStats, PackageDownloader, ProgressThrottle
from edge_node.ota.journal import CommandJournal, JournalFull
from edge_node.ota.startup import StartupRecovery
from edge_node.selftest import SelfTestError, selftest

logger = logging.getLogger(__name__)

LoadClassifier = Callable[[InstalledModel], Classifier]
PublishUpdate = Callable[[UpdateMessage], None]
PublishWarning = Callable[[str, str], None]
_STOP = object()


class CommandFailed(Exception):
    """Ends a command with FAILED and this reason."""


class OtaAgent:
    """Applies OTA commands in its own thread; the serving model changes only after a passed self-test."""

    def __init__(
        self,
        store: ModelStore,
        holder: ModelHolder,
        load_classifier: LoadClassifier,
        publish_update: PublishUpdate,
        device_id: str,
        work_dir: Path,
        http_token: str | None,
        max_package_bytes: int,
        *,
        publish_warning: PublishWarning | None = None,
        downloader: PackageDownloader | None = None,
        package_origin: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._store = store
        self._holder = holder
        self._load_classifier = load_classifier
        self._publish_update = publish_update
        self._publish_warning = publish_warning
        self.device_id = device_id
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._max_package_bytes = max_package_bytes
        # The token goes only to package_origin (the dashboard), and no other host is ever contacted.
        # ca_file: the site's own CA, so an https dashboard with a certificate the site signed is trusted.
        self._downloader = downloader or PackageDownloader(
            self.work_dir / "downloads", http_token, origin=package_origin, ca_file=ca_file
        )
        self._journal = CommandJournal(self.work_dir / "ota_journal.json")
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cancel = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._accept_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.last_download = DownloadStats()
        self.bytes_downloaded = 0

    # public ----------------------------------------------------------------------------------

    def startup(self, initial_package: Path | None) -> None:
        """Serve the newest model that passes its self-test, report on a command a kill interrupted, resume queued ones."""
        recovery = StartupRecovery(self._store, self._holder, self._load_classifier, self._warn)
        served = recovery.serve_best(Path(initial_package) if initial_package else None)
        self._report_interrupted(served)
        self._clean_downloads(keep_partials=True)
        self._start_worker()
        for message in self._journal.queued():
            self._enqueue(message)

    def handle(self, message: CommandMessage) -> None:
        """Accept a model_update or rollback command (durably) and return at once; a repeat is answered, not applied."""
        if not isinstance(message.command, (ModelUpdate, Rollback)):
            logger.debug("OTA agent ignores %s commands", message.command.kind)
            return
        with self._accept_lock:
            if self._journal.known(message.command_id):
                self._answer_repeat(message.command_id)
                return
            try:
                self._journal.accept(message)
            except JournalFull as exc:
                self._publish(message.command_id, UpdateState.FAILED, reason=str(exc))
                return
            self._start_worker()
            self._enqueue(message)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no command is queued or running (for tests and clean shutdown)."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel a download in progress and end the worker; queued commands stay journaled for next start."""
        self._cancel.set()
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(timeout)

    @property
    def serving_version(self) -> str | None:
        """Version of the model serving now."""
        return self._holder.model_version

    # worker ----------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._cancel.clear()
            self._worker = threading.Thread(target=self._run, name=f"ota-{self.device_id}", daemon=True)
            self._worker.start()

    def _enqueue(self, message: CommandMessage) -> None:
        self._idle.clear()
        self._queue.put(message)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._execute(item)
            except Exception:  # noqa: BLE001 - the worker must survive any bug in one command
                logger.exception("OTA command %s crashed", item.command_id)
                self._finish(item.command_id, UpdateState.FAILED, reason="internal error; see the node log")
            if self._queue.empty():
                self._idle.set()

    def _execute(self, message: CommandMessage) -> None:
        command = message.command
        kind = command.kind
        version = getattr(command, "version", None)
        initial = UpdateState.DOWNLOADING if isinstance(command, ModelUpdate) else UpdateState.SELF_TEST
        self._journal.begin(message.command_id, kind, version, initial.value)
        try:
            if isinstance(command, ModelUpdate):
                self._apply_update(message.command_id, command)
            else:
                self._apply_rollback(message.command_id, command)
        except CommandFailed as exc:
            logger.warning("command %s failed: %s", message.command_id, exc)
            self._finish(message.command_id, UpdateState.FAILED, version=version, reason=str(exc))

    def _apply_update(self, command_id: str, update: ModelUpdate) -> None:
        serving = self._holder.model_version
        if serving is not None and version_key(update.version) <= version_key(serving):
            raise CommandFailed(f"version {update.version} is not newer than the active {serving}")
        if update.size > self._max_package_bytes:
            raise CommandFailed(f"package of {update.size} bytes exceeds the limit of {self._max_package_bytes}")
        installed: InstalledModel | None = None
        try:
            package = self._download(command_id, update)
            try:
                manifest = self._store.verify_package(package)
            except PackageError as exc:
                raise CommandFailed(f"package refused: {exc}") from None
            if manifest.version != update.version:
                raise CommandFailed(f"package is version {manifest.version}, the command said {update.version}")
            self._publish(command_id, UpdateState.VERIFIED, version=update.version)
            self._stage(command_id, UpdateState.INSTALLING, update.version)
            try:
                installed = self._store.install(package)
            except (PackageError, OSError) as exc:
                raise CommandFailed(f"install failed: {exc}") from None
            self._stage(command_id, UpdateState.SELF_TEST, update.version)
            classifier = self._load_and_test(installed)
            try:
                self._store.activate(installed)
            except (ModelStoreError, OSError) as exc:
                raise CommandFailed(f"could not switch to the new model: {exc}") from None
            installed = None
            self._holder.swap(classifier)
            self._finish(command_id, UpdateState.ACTIVE, version=update.version)
        finally:
            self._downloader.partial_path(update.sha256).unlink(missing_ok=True)
            if installed is not None:
                self._discard(installed)

    def _discard(self, model: InstalledModel) -> None:
        try:
            self._store.discard(model)
        except ModelStoreError as exc:
            logger.error("not discarding slot %s: %s", model.slot, exc)

    def _download(self, command_id: str, update: ModelUpdate) -> Path:
        self._publish(command_id, UpdateState.DOWNLOADING, version=update.version, progress=0.0)
        throttle = ProgressThrottle(
            lambda fraction: self._publish(command_id, UpdateState.DOWNLOADING, version=update.version, progress=fraction)
        )
        self.last_download = DownloadStats()
        try:
            path = self._downloader.fetch(
                update.url, update.sha256, update.size, progress=throttle, cancel=self._cancel, stats=self.last_download
            )
        except DownloadError as exc:
            raise CommandFailed(f"download failed: {exc}") from None
        finally:
            self.bytes_downloaded += self.last_download.bytes_fetched
        self._publish(command_id, UpdateState.DOWNLOADED, version=update.version, progress=1.0)
        return path

    def _load_and_test(self, model: InstalledModel) -> Classifier:
        """Load a slot's model and reproduce its self-test, or raise CommandFailed."""
        try:
            self._store.check(model)
            classifier = self._load_classifier(model)
        except (ModelStoreError, ValueError, RuntimeError, OSError) as exc:
            raise CommandFailed(f"model {model.version} does not load: {exc}") from None
        try:
            result = selftest(classifier, model)
        except SelfTestError as exc:
            self._warn("SELF_TEST_FAILED", f"model {model.version} failed its self-test: {exc}")
            raise CommandFailed(f"self-test failed: {exc}") from None
        logger.info(
            "model %s passed its self-test on %s %s at %s (max difference %.3g)",
            model.version, classifier.runtime, classifier.device, classifier.precision, result.max_abs_diff,
        )
        return classifier

    def _apply_rollback(self, command_id: str, rollback: Rollback) -> None:
        previous = self._store.previous()
        if previous is None:
            raise CommandFailed("there is no previous model to roll back to")
        if rollback.version is not None and previous.version != rollback.version:
            raise CommandFailed(f"the previous model is {previous.version}, not the requested {rollback.version}")
        self._journal.stage(UpdateState.SELF_TEST.value, version=previous.version)
        self._publish(command_id, UpdateState.SELF_TEST, version=previous.version)
        classifier = self._load_and_test(previous)
        self._store.rollback()
        self._holder.swap(classifier)
        self._finish(command_id, UpdateState.ROLLED_BACK, version=previous.version)

    # reporting -------------------------------------------------------------------------------

    def _report_interrupted(self, served: InstalledModel | None) -> None:
        """Tell the truth about a command that a kill cut short."""
        pending = self._journal.pending()
        if pending is None:
            return
        command_id, version, step = pending["command_id"], pending.get("version"), pending.get("state")
        serving = served.version if served else None
        reached = pending.get("kind") == "model_update" and step in ("INSTALLING", "SELF_TEST")
        if reached and serving is not None and serving == version:
            self._finish(command_id, UpdateState.ACTIVE, version=version, reason="confirmed after a restart")
        elif pending.get("kind") == "rollback" and serving is not None and serving == version:
            self._finish(command_id, UpdateState.ROLLED_BACK, version=version, reason="confirmed after a restart")
        else:
            reason = f"interrupted by a restart during {step}; serving {serving or 'no model'}"
            self._finish(command_id, UpdateState.FAILED, version=version, reason=reason)

    def _stage(self, command_id: str, state: UpdateState, version: str | None) -> None:
        self._journal.stage(state.value)
        self._publish(command_id, state, version=version)

    def _finish(self, command_id: str, state: UpdateState, **fields: Any) -> None:
        outcome = {"state": state.value, "version": fields.get("version"), "reason": fields.get("reason")}
        self._journal.finish(command_id, outcome)
        self._publish(command_id, state, **fields)

    def _answer_repeat(self, command_id: str) -> None:
        """Answer a redelivered command id with its recorded outcome (or the step it is at); never apply it twice."""
        recorded = self._journal.recorded(command_id) or {}
        state = recorded.get("state")
        if state not in UpdateState.__members__:
            logger.info("command %s was already received and is queued (or has no recorded outcome)", command_id)
            return
        logger.info("command %s was already received; answering with %s", command_id, state)
        fields = {key: recorded[key] for key in ("version", "reason") if recorded.get(key) is not None}
        self._publish(command_id, UpdateState(state), **fields)

    def _publish(self, command_id: str, state: UpdateState, **fields: Any) -> None:
        if isinstance(fields.get("reason"), str):
            fields["reason"] = fields["reason"][:1000]
        message = UpdateMessage(device=self.device_id, command_id=command_id, state=state, **fields)
        logger.info("command %s: %s %s", command_id, state.value, fields.get("reason") or fields.get("version") or "")
        try:
            self._publish_update(message)
        except Exception:  # noqa: BLE001 - a failed report must not break the update itself
            logger.exception("could not publish the %s update for command %s", state.value, command_id)

    def _warn(self, code: str, text: str) -> None:
        if self._publish_warning is not None:
            try:
                self._publish_warning(code, text[:1000])
            except Exception:  # noqa: BLE001
                logger.exception("could not publish a warning")

    def _clean_downloads(self, keep_partials: bool) -> None:
        """Remove leftovers in the download folder; partials are kept for resuming unless told otherwise."""
        for leftover in self._downloader.downloads_dir.iterdir():
            if keep_partials and leftover.suffix == ".part" and leftover.stat().st_size > 0:
                continue
            leftover.unlink(missing_ok=True)
