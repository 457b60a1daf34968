"""Watched folder: each complete image is classified, then moved to done/ or to failed/ with a reason file."""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from pathlib import Path

from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from contracts.specimens import is_specimen_id
from edge_node.sources.decode import MAX_IMAGE_BYTES, ImageRejected
from edge_node.sources.pipeline import ClassificationPipeline, NoModelError

logger = logging.getLogger(__name__)

DONE, FAILED = "done", "failed"
IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".reason.txt")


def _wanted(path: Path) -> bool:
    """Skip hidden files and names writers use while a file is still being written."""
    return not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES)


class _Events(FileSystemEventHandler):
    """Queue a file when its writer closes it or when it is renamed into the folder (both mean complete)."""

    def __init__(self, enqueue: "FolderSource") -> None:
        self._source = enqueue

    def on_closed(self, event: FileClosedEvent) -> None:
        self._source.enqueue(Path(os.fsdecode(event.src_path)))

    def on_moved(self, event: FileMovedEvent) -> None:
        self._source.enqueue(Path(os.fsdecode(event.dest_path)))

    def on_any_event(self, event: FileSystemEvent) -> None:
        return None


class FolderSource:
    """Watches one folder and its specimen sub-folders with watchdog and processes files on a worker thread.

    A file directly in the folder has no specimen; a file in `<folder>/<specimen_id>/` belongs to that
    specimen (the sub-folder's name is the opaque id, so it must never be a patient's name).

    Files written in place are read once their writer closes them (inotify close-after-write) or they
    are renamed in; a periodic rescan picks up anything whose event was missed once it has stopped
    changing for `settle_s`.
    """

    def __init__(
        self, folder: Path, pipeline: ClassificationPipeline, rescan_s: float = 5.0, settle_s: float = 2.0
    ) -> None:
        self.folder = Path(folder)
        self.done_dir = self.folder / DONE
        self.failed_dir = self.folder / FAILED
        self._pipeline = pipeline
        self._rescan_s = rescan_s
        self._settle_s = settle_s
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._queued: set[Path] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._observer = Observer()
        self._worker = threading.Thread(target=self._run, name="folder-source", daemon=True)
        self.processed = 0
        self.failed = 0

    def start(self) -> None:
        """Create the folders, queue what is already there, and start watching."""
        for folder in (self.folder, self.done_dir, self.failed_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._observer.schedule(_Events(self), str(self.folder), recursive=True)
        self._observer.start()
        self._worker.start()
        self._rescan(settled_only=False)
        logger.info("watching %s", self.folder)

    def stop(self) -> None:
        """Stop watching and let the worker finish the file in hand."""
        self._stopping.set()
        self._observer.stop()
        self._queue.put(None)
        self._observer.join(5)
        self._worker.join(30)

    def specimen_of(self, path: Path) -> str | None:
        """The specimen sub-folder a file is in, or None for a file directly in the watched folder."""
        return None if path.parent == self.folder else path.parent.name

    def _watched(self, path: Path) -> bool:
        """A file directly in the folder or one level down in a sub-folder other than done/ and failed/."""
        if path.parent == self.folder:
            return True
        return path.parent.parent == self.folder and path.parent.name not in (DONE, FAILED)

    def enqueue(self, path: Path) -> None:
        """Queue a file of the watched folder or of a specimen sub-folder once."""
        if not self._watched(path) or not _wanted(path):
            return
        with self._lock:
            if path in self._queued:
                return
            self._queued.add(path)
        self._queue.put(path)

    def _rescan(self, settled_only: bool, folder: Path | None = None) -> None:
        now = time.time()
        folder = folder or self.folder
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            logger.error("cannot list %s: %s", folder, exc)
            return
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if folder == self.folder and entry.name not in (DONE, FAILED):
                    self._rescan(settled_only, Path(entry.path))
                continue
            if settled_only and now - info.st_mtime < self._settle_s:
                continue
            self.enqueue(Path(entry.path))

    def _run(self) -> None:
        next_scan = time.monotonic() + self._rescan_s
        while not self._stopping.is_set():
            try:
                path = self._queue.get(timeout=max(0.05, next_scan - time.monotonic()))
            except queue.Empty:
                path = None
            if path is not None:
                try:
                    self._handle(path)
                except Exception:
                    logger.exception("unexpected error on a watched file; it stays for a later retry")
                finally:
                    with self._lock:
                        self._queued.discard(path)
            if time.monotonic() >= next_scan and not self._stopping.is_set():
                self._rescan(settled_only=True)
                next_scan = time.monotonic() + self._rescan_s

    def _handle(self, path: Path) -> None:
        """Classify one file and move it; a file with no model to serve it stays for later."""
        try:
            data = self._read(path)
        except FileNotFoundError:
            return
        except ImageRejected as exc:
            self._fail(path, str(exc))
            return
        specimen = self.specimen_of(path)
        if specimen is not None and not is_specimen_id(specimen):
            self._fail(path, "specimen folder name is not an opaque id (letters, digits, '.', '_', '-'; at most 64)")
            return
        try:
            outcome = self._pipeline.process_bytes(data, source="folder", specimen_id=specimen)
        except ImageRejected as exc:
            self._fail(path, str(exc))
            return
        except NoModelError:
            logger.warning("no model serving: %s stays queued for the next scan", path.name)
            return
        self._move(path, self._beside(self.done_dir, specimen))
        self.processed += 1
        logger.info("classified a watched file as %s (sample %s)", outcome.message.label, outcome.message.sample_id)

    def _read(self, path: Path) -> bytes:
        """Read a regular file, refusing links, devices and oversized files without following them."""
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected("not a regular file (links, pipes and devices are refused)")
        if info.st_size > MAX_IMAGE_BYTES:
            raise ImageRejected(f"file is {info.st_size} bytes, over the limit of {MAX_IMAGE_BYTES}")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            return handle.read(MAX_IMAGE_BYTES + 1)

    def _fail(self, path: Path, reason: str) -> None:
        """Move a refused file to failed/ and write why beside it."""
        self.failed += 1
        logger.warning("refused a watched file: %s", reason)
        specimen = self.specimen_of(path)
        target = self._move(path, self._beside(self.failed_dir, specimen if specimen and is_specimen_id(specimen) else None))
        if target is not None:
            # Written aside and renamed: whoever lists failed/ never reads a reason half written.
            reason_file = target.with_name(target.name + ".reason.txt")
            partial = reason_file.with_name(reason_file.name + ".tmp")
            partial.write_text(reason + "\n")
            os.replace(partial, reason_file)

    @staticmethod
    def _beside(folder: Path, specimen: str | None) -> Path:
        """done/ or failed/, or its sub-folder of the specimen (created on first use)."""
        if specimen is None:
            return folder
        target = folder / specimen
        target.mkdir(exist_ok=True)
        return target

    def _move(self, path: Path, folder: Path) -> Path | None:
        """Move path into folder without overwriting an earlier file of the same name.

        Link-then-unlink rather than rename: a rename out of the watched folder is an unpaired
        IN_MOVED_FROM, which watchdog holds for 0.5 s and which would delay every later event.
        """
        counter = 0
        while True:
            target = folder / (path.name if counter == 0 else f"{path.stem}.{counter}{path.suffix}")
            counter += 1
            try:
                os.link(path, target, follow_symlinks=False)
            except FileExistsError:
                continue
            except FileNotFoundError:
                return None
            except OSError:
                if target.exists():
                    continue
                os.replace(path, target)  # a filesystem without hard links
                return target
            os.unlink(path)
            return target
