"""Sending: one Reply into one room, encrypted for the devices the trust rules allow, with retries left to the caller."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
from collections.abc import Awaitable, Callable

from nio import AsyncClient, LocalProtocolError, RoomSendError, SendRetryError, UploadError, UploadResponse

from meldbot.adapters.matrix.common import NETWORK_ERRORS, RateLimited, RoomGone, delivery_error, log, transaction_id
from meldbot.adapters.matrix.render import image_content, render
from meldbot.core.messaging import DeliveryError, Reply, split_reply

# Set while this adapter sends, so a long rate limit ends the attempt instead of waiting.
_sending: contextvars.ContextVar[bool] = contextvars.ContextVar("meldbot_matrix_sending", default=False)

# prepare(room, recipient, unguarded): fresh member and device lists and the trust rules; may raise
# DeliveryError or RecipientAway. `unguarded` is for content-free alerts that every device may read.
Prepare = Callable[[object, str | None, bool], Awaitable[None]]

# A Matrix event may be 65,536 bytes, counted over the whole event as the homeserver stores it. In an
# encrypted room the content travels as base64 of the Megolm ciphertext (4/3 of the JSON, plus keys,
# MAC and signature), inside an envelope of ids, hashes and signatures of about 1-2 KB. The content's
# JSON with every non-ASCII character as a \u escape (never less than its UTF-8) stays below this budget,
# so 40,000 * 4/3 + overhead leaves a wide margin.
CONTENT_BUDGET = 40_000


def content_size(content: dict) -> int:
    return len(json.dumps(content, ensure_ascii=True, separators=(",", ":")))


def fits(reply: Reply) -> bool:
    return content_size(render(reply)) <= CONTENT_BUDGET


def part_transaction(key: str, index: int) -> str:
    """Part 0 and the picture (1) keep the ids they had before replies were split; later parts follow."""
    return transaction_id(key, 0 if index == 0 else index + 1)


class Sender:
    def __init__(self, client: AsyncClient, prepare: Prepare, image_name: str, *, send_timeout: float,
                 inline_rate_limit_ms: int, shared: Callable[[object], bool] = lambda room: False,
                 shared_lock: asyncio.Lock | None = None) -> None:
        self.client = client
        self._prepare = prepare
        self._shared = shared
        self._image_name = image_name
        self._send_timeout = send_timeout
        self._inline_rate_limit_ms = inline_rate_limit_ms
        # One send at a time per room: which devices get the room key is decided per message.
        self._room_locks: dict[str, asyncio.Lock] = {}
        # Rooms with an AF share one lock: which AF devices may read is set for the AF, not per room,
        # and an alert that every device may read must not open another room's key to them. The AF trust
        # looks hold it too (Devices.lock): which devices may read never changes in the middle of a send.
        self._shared_lock = shared_lock or asyncio.Lock()
        client.add_response_callback(self._on_rate_limit, (RoomSendError, UploadError))

    async def send(self, room_id: str, reply: Reply, key: str, *, recipient: str | None = None,
                   unguarded: bool = False) -> None:
        room = self.client.rooms.get(room_id)
        if room is None:
            raise RoomGone("room not known")
        lock = self._shared_lock if self._shared(room) else self._room_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            await self._prepare(room, recipient, unguarded)
            try:
                await self._send_parts(room, reply, key)
            finally:
                if unguarded and self.client.olm:
                    # The key of this message went to devices that may not read anything else.
                    self.client.invalidate_outbound_session(room_id)

    async def _send_parts(self, room, reply: Reply, key: str) -> None:
        # A retry sends every part again with the same transaction ids: the homeserver shows each once.
        parts = split_reply(reply, fits)
        for index, part in enumerate(parts):
            await self._room_send(room.room_id, render(part), part_transaction(key, index))
        reply = parts[-1]
        if reply.image:
            name = self._image_name
            if room.encrypted:
                upload, keys = await self._upload(reply.image, name, encrypt=True)
                content = image_content(reply, name, file={**keys, "url": upload.content_uri})
            else:
                upload, _ = await self._upload(reply.image, name, encrypt=False)
                content = image_content(reply, name, url=upload.content_uri)
            await self._room_send(room.room_id, content, transaction_id(key, 1))

    async def _upload(self, data: bytes, name: str, *, encrypt: bool):
        marker = _sending.set(True)
        try:
            response, keys = await self.client.upload(io.BytesIO(data), content_type="image/png", filename=name,
                                                       encrypt=encrypt, filesize=len(data))
        except RateLimited as exc:
            raise DeliveryError(f"rate limited for {exc.retry_after_ms} ms") from None
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
        finally:
            _sending.reset(marker)
        if not isinstance(response, UploadResponse):
            raise delivery_error(response)
        return response, keys

    async def _room_send(self, room_id: str, content: dict, txn_id: str) -> None:
        marker = _sending.set(True)
        try:
            async with asyncio.timeout(self._send_timeout):
                response = await self.client.room_send(room_id, "m.room.message", content, tx_id=txn_id,
                                                       ignore_unverified_devices=True)
        except RateLimited as exc:
            error = DeliveryError(f"rate limited for {exc.retry_after_ms} ms")
        except NETWORK_ERRORS as exc:
            error = DeliveryError(f"homeserver unreachable ({type(exc).__name__})")
        except (SendRetryError, LocalProtocolError) as exc:
            error = DeliveryError(f"not sendable yet ({type(exc).__name__})")
        else:
            if not isinstance(response, RoomSendError):
                return
            error = delivery_error(response)
        finally:
            _sending.reset(marker)
        # nio marks a room key as shared even when handing it out failed half-way; a fresh key on the
        # next attempt makes sure every device of the recipient can read the message.
        if self.client.olm and room_id in self.client.olm.outbound_group_sessions:
            self.client.invalidate_outbound_session(room_id)
        raise error

    async def _on_rate_limit(self, response) -> None:
        """nio waits out a 429 itself; a long wait while sending ends the attempt and the outbox retries."""
        if not _sending.get() or response.status_code != "M_LIMIT_EXCEEDED":
            return  # sync and key traffic: nio waits; an aborted key share would leave devices without keys
        retry_after = response.retry_after_ms or 5000
        if retry_after > self._inline_rate_limit_ms:
            raise RateLimited(retry_after)
        log.info("matrix rate limited; waiting", extra={"retry_after_ms": retry_after})
