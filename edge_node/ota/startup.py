"""On start: serve the newest model that passes its self-test (active, else previous, else the initial package)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from contracts.model_package import PackageError
from edge_node.inference import Classifier, ModelHolder
from edge_node.model_store import InstalledModel, ModelStore, ModelStoreError
from edge_node.selftest import SelfTestError, selftest

logger = logging.getLogger(__name__)

_LOAD_ERRORS = (ModelStoreError, PackageError, SelfTestError, ValueError, RuntimeError, OSError)


class StartupRecovery:
    """Chooses what serves after a (possibly unclean) start; nothing serves that has not passed its self-test."""

    def __init__(
        self,
        store: ModelStore,
        holder: ModelHolder,
        load_classifier: Callable[[InstalledModel], Classifier],
        warn: Callable[[str, str], None],
    ) -> None:
        self._store = store
        self._holder = holder
        self._load_classifier = load_classifier
        self._warn = warn
        self._last_error: str | None = None

    def serve_best(self, initial_package: Path | None) -> InstalledModel | None:
        """Load the first good model into the holder and return it; None if nothing passes."""
        try:
            self._store.recover()
        except (ModelStoreError, OSError) as exc:
            logger.error("model store recovery failed: %s", exc)
        active = self._slot(self._store.active)
        if active is not None:
            if (classifier := self._tested(active)) is not None:
                self._holder.swap(classifier)
                return active
            previous = self._slot(self._store.previous)
            if previous is not None and (classifier := self._tested(previous)) is not None:
                self._store.rollback(discard_current=True)
                self._holder.swap(classifier)
                self._warn("SELF_TEST_FAILED", f"model {active.version} failed its self-test at start; back on {previous.version}")
                return previous
        if initial_package is not None:
            served = self._install_initial(initial_package, broken_active=active is not None)
            if served is not None:
                return served
        if active is not None or self._last_error is not None:
            reason = f"no model can serve: {self._last_error or 'no installed model passes its self-test'}"
        else:
            reason = "no model: the model store is empty and no initial package is configured"
        logger.error("%s; waiting for a model update", reason)
        self._holder.mark_unavailable(reason)
        self._warn("NO_MODEL", reason)
        return None

    def _install_initial(self, package: Path, broken_active: bool) -> InstalledModel | None:
        """Install the configured initial package; a broken active slot is then forgotten."""
        try:
            installed = self._store.install(package)
        except (PackageError, OSError) as exc:
            logger.error("initial package %s cannot be installed: %s", package, exc)
            self._last_error = f"initial package refused: {exc}"
            self._warn("MODEL_ERROR", self._last_error)
            return None
        classifier = self._tested(installed)
        if classifier is None:
            self._store.discard(installed)
            return None
        self._store.activate(installed)
        if broken_active:
            self._store.forget_previous()
        self._holder.swap(classifier)
        logger.info("serving the initial package's model %s", installed.version)
        return installed

    def _slot(self, getter: Callable[[], InstalledModel | None]) -> InstalledModel | None:
        try:
            return getter()
        except (ModelStoreError, PackageError) as exc:
            logger.error("installed model is unusable: %s", exc)
            return None

    def _tested(self, model: InstalledModel) -> Classifier | None:
        """A loaded classifier that reproduced its self-test at its precision, or None (with a warning)."""
        try:
            self._store.check(model)
            classifier = self._load_classifier(model)
            selftest(classifier, model)
        except _LOAD_ERRORS as exc:
            logger.error("model %s in slot %s cannot serve: %s", model.version, model.slot, exc)
            self._last_error = f"model {model.version} cannot serve: {exc}"
            self._warn("SELF_TEST_FAILED", self._last_error)
            return None
        return classifier
