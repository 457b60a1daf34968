"""What a node says on the wire and how it answers Commands; shared by the real node and the fleet simulator."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from contracts import SOFTWARE_VERSION
from contracts.messages import (
    CommandMessage,
    MessageError,
    NodeState,
    Ping,
    Replay,
    Severity,
    StatusMessage,
    UpdateMessage,
    UpdateState,
    WarningCode,
    WarningMessage,
    from_bytes,
    to_bytes,
)
from contracts.topics import Channel

if TYPE_CHECKING:
    from edge_node.inference import ModelHolder
    from edge_node.mqtt_link import MqttLink
    from edge_node.ota import OtaAgent
    from edge_node.outbox import Outbox
    from edge_node.telemetry import Warner

logger = logging.getLogger(__name__)


class NodeChannels:
    """Builds Status payloads, publishes Updates and Warnings, and dispatches Commands.

    Made before the link, the warner and the OTA agent (they take its callbacks), then `bind()`s to them.
    """

    def __init__(
        self,
        device_id: str,
        topic: Callable[[Channel], str],
        holder: ModelHolder,
        on_update: Callable[[UpdateMessage], None] | None = None,
        commander: str | None = None,
    ) -> None:
        """commander: the dashboard's application id, the only sender whose Commands are obeyed (None: any)."""
        self.device_id = device_id
        self.commander = commander
        self.refused_commands = 0
        self._topic = topic
        self._holder = holder
        self._on_update = on_update
        self._link: MqttLink | None = None
        self._warner: Warner | None = None
        self._ota: OtaAgent | None = None
        self._publish_life: Callable[[], object] = lambda: None
        self._outbox: Outbox | None = None
        self._replay: Callable[[float], object] = lambda _seconds: None

    def bind(
        self, link: MqttLink, warner: Warner, ota: OtaAgent, publish_life: Callable[[], object], outbox: Outbox,
        replay: Callable[[float], object] | None = None,
    ) -> None:
        """Attach the parts that were built with this object's callbacks, and route Commands here."""
        self._link, self._warner, self._ota, self._publish_life = link, warner, ota, publish_life
        self._outbox = outbox
        if replay is not None:
            self._replay = replay
        link.add_route(self._topic(Channel.COMMANDS), self.on_command)

    @property
    def link(self) -> MqttLink:
        """The bound MQTT link."""
        if self._link is None:
            raise RuntimeError("NodeChannels used before bind()")
        return self._link

    def status_payload(self, online: bool, session_started: datetime) -> bytes:
        """The retained Status: ONLINE (or NO_MODEL, with the reason) birth, or OFFLINE will, of one connection."""
        state, reason = NodeState.OFFLINE, None
        if online:
            reason = self._holder.reason
            state = NodeState.ONLINE if reason is None else NodeState.NO_MODEL
        return to_bytes(
            StatusMessage(
                device=self.device_id,
                state=state,
                reason=reason[:1000] if reason else None,
                model_version=self._holder.model_version,
                software_version=SOFTWARE_VERSION,
                session_started=session_started,
                **self._holder.serving_info(),
            )
        )

    def on_command(self, message: object) -> None:
        """Validate a Commands payload; answer `ping` here, hand model commands to the OTA agent."""
        try:
            command = from_bytes(getattr(message, "payload", b""), Channel.COMMANDS)
        except MessageError as exc:
            if self._warner is not None:
                self._warner.warn(WarningCode.INPUT_REJECTED, f"command refused: {exc}", key="command")
            return
        assert isinstance(command, CommandMessage)
        if self.commander is not None and command.device != self.commander:
            # Only the dashboard writes Commands; an envelope naming anyone else is forged or misrouted.
            self.refused_commands += 1
            logger.warning("refused command %s: sent by %r, not the dashboard %r (%d refused so far)",
                           command.command_id, command.device, self.commander, self.refused_commands)
            if self._warner is not None:
                self._warner.warn(WarningCode.INPUT_REJECTED, f"command {command.command_id} refused: sender "
                                  f"{command.device!r} is not the dashboard", key="command-sender")
            return
        logger.info("command %s (%s)", command.command_id, command.command.kind)
        if isinstance(command.command, Ping):
            self.link.publish_status()
            self._publish_life()
        elif isinstance(command.command, Replay):
            # Answered by the replayed results themselves and a fresh Life (its outbox_depth shows them queued).
            self._replay(command.command.seconds)
            self._publish_life()
        elif self._ota is not None:
            self._ota.handle(command)

    def publish_update(self, update: UpdateMessage) -> None:
        """OTA progress on Updates, through the durable outbox; a model switch also refreshes the retained Status."""
        if self._on_update is not None:
            self._on_update(update)
        if update.state in (UpdateState.ACTIVE, UpdateState.ROLLED_BACK):
            self.link.publish_status()
        if self._outbox is None:
            raise RuntimeError("NodeChannels used before bind()")
        # Stored before it is sent and deleted only on PUBACK: a kill cannot lose an outcome the rollout waits for.
        self._outbox.put(self._topic(Channel.UPDATES), to_bytes(update), qos=1)

    def publish_warning(self, warning: WarningMessage) -> None:
        """A node-side problem on Warnings."""
        self.link.publish(self._topic(Channel.WARNINGS), to_bytes(warning), qos=1)

    def publish_ota_warning(self, code: str, text: str) -> None:
        """A warning raised by the OTA agent, as a critical Warning."""
        if self._warner is None:
            return
        known = WarningCode(code) if code in WarningCode.__members__ else WarningCode.MODEL_ERROR
        self._warner.warn(known, text, Severity.CRITICAL, key="ota")
