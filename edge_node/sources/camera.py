"""Camera or video stream through OpenCV: one frame classified every interval."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2

from edge_node.sources.pipeline import ClassificationPipeline, NoModelError

logger = logging.getLogger(__name__)


def open_capture(source: str) -> cv2.VideoCapture:
    """A VideoCapture for a device index ("0"), a video file or a stream URL."""
    target: int | str = int(source) if source.isdigit() else source
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise OSError(f"cannot open camera or video source {source!r}")
    return capture


class CameraSource:
    """Classifies a frame every `interval_s`: video time for files (so a file gives the same frames
    at any speed), wall time for live devices and streams, which are read continuously so the
    classified frame is the newest."""

    def __init__(
        self, source: str, pipeline: ClassificationPipeline, interval_s: float, reopen_delay_s: float = 5.0
    ) -> None:
        self.source = source
        self.is_file = Path(source).is_file()
        self._pipeline = pipeline
        self._interval_s = interval_s
        self._reopen_delay_s = reopen_delay_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-source", daemon=True)
        self.frames_classified = 0
        self.finished = threading.Event()

    def start(self) -> None:
        """Start reading in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading."""
        self._stopping.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                capture = open_capture(self.source)
            except OSError as exc:
                logger.error("%s; retrying in %.0f s", exc, self._reopen_delay_s)
                self._stopping.wait(self._reopen_delay_s)
                continue
            try:
                self._read(capture)
            finally:
                capture.release()
            if self.is_file:
                logger.info("video file finished after %d classified frames", self.frames_classified)
                self.finished.set()
                return
            logger.warning("camera stream ended; reopening in %.0f s", self._reopen_delay_s)
            self._stopping.wait(self._reopen_delay_s)

    def _read(self, capture: cv2.VideoCapture) -> None:
        next_due = 0.0
        while not self._stopping.is_set():
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            now = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if self.is_file else time.monotonic()
            if now < next_due:
                continue
            next_due = now + self._interval_s
            self._classify(frame)

    def _classify(self, bgr_frame: object) -> None:
        if getattr(bgr_frame, "ndim", 0) != 3 or bgr_frame.shape[2] != 3:  # type: ignore[attr-defined]
            logger.warning("skipping a frame that is not 3-channel colour")
            return
        rgb = cv2.cvtColor(bgr_frame, cv2.COLOR_BGR2RGB)  # type: ignore[call-overload]
        try:
            self._pipeline.process_pixels(rgb)
        except NoModelError:
            logger.warning("no model serving: camera frame skipped")
            return
        except ValueError as exc:
            logger.warning("camera frame refused: %s", exc)
            return
        self.frames_classified += 1
