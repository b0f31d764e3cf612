"""Direct chats: find the encrypted one-to-one room with a person, or open one and remember it in m.direct."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from nio import AsyncClient, DirectRoomsResponse, ProfileGetError, RoomCreateError, RoomPreset
from nio.api import Api

from meldbot.adapters.matrix.common import ENCRYPTION_STATE, NETWORK_ERRORS, log
from meldbot.core.messaging import DeliveryError


class DirectRooms:
    def __init__(self, client: AsyncClient, wait_synced: Callable[[float], Awaitable[None]]) -> None:
        self.client = client
        self._wait_synced = wait_synced
        # m.direct as stored in the account data (the direct chats the bot opened), and every direct
        # chat known in this run (also those others opened with the bot).
        self._account_direct: dict[str, list[str]] = {}
        self._direct: dict[str, list[str]] = {}
        self._direct_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._created: dict[str, str] = {}

    def invited_to(self, inviter: str, room_id: str) -> None:
        """Someone opened a direct chat with the bot."""
        self._direct.setdefault(inviter, []).append(room_id)

    async def room_for(self, user_id: str) -> str:
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            room_id = self.find(user_id)
            if room_id is None:
                room_id = self._created.get(user_id) or await self._create(user_id)
            deadline = time.monotonic() + 20
            fresh = room_id in self._created.values()
            # A room can be sent to only after it was synced, and only with the invite in it: the room
            # key goes to the members nio knows, and a sync can come between createRoom's events. A room
            # the bot just opened waits (a while) for the person to join: a client that decrypts the
            # first message in the same sync as its own join has not fetched the bot's device yet, and
            # Element's "exclude insecure devices" refuses a message from a device it does not know.
            while not self._ready(room_id, user_id, fresh and time.monotonic() < deadline - 10):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeliveryError("new direct chat not synced yet")
                try:
                    await self._wait_synced(remaining)
                except TimeoutError:
                    pass
            self._created.pop(user_id, None)
            return room_id

    def _ready(self, room_id: str, user_id: str, until_joined: bool) -> bool:
        room = self.client.rooms.get(room_id)
        if room is None or user_id not in room.users:
            return False
        return not until_joined or not room.users[user_id].invited

    def _fits(self, room_id: str, user_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return bool(room and room.encrypted and set(room.users) == {self.client.user_id, user_id})

    def find(self, user_id: str) -> str | None:
        """An encrypted room with only the bot and this person; one they joined, and the newest, first."""
        known = [r for r in self._direct.get(user_id, ()) if self._fits(r, user_id)]
        if not known:  # e.g. after a restart: a direct chat someone else opened; look through all rooms
            known = [r for r in self.client.rooms if self._fits(r, user_id)]
        joined = [r for r in known if not self.client.rooms[r].users[user_id].invited]
        return (joined or known or [None])[-1]

    async def _create(self, user_id: str) -> str:
        try:
            profile = await self.client.get_profile(user_id)
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
        if isinstance(profile, ProfileGetError):
            status = getattr(profile.transport_response, "status", None)
            # Synapse answers an unknown local user with 404 (the errcode varies); createRoom would not mind.
            if status == 404:
                raise DeliveryError(f"no such matrix user ({profile.status_code})", permanent=True)
            raise DeliveryError(f"profile lookup failed ({status} {profile.status_code})")
        try:
            response = await self.client.room_create(
                is_direct=True, preset=RoomPreset.trusted_private_chat, invite=[user_id],
                initial_state=[ENCRYPTION_STATE],
            )
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
        if isinstance(response, RoomCreateError):
            raise DeliveryError(f"homeserver said {response.status_code}")
        self._created[user_id] = response.room_id
        self._direct.setdefault(user_id, []).append(response.room_id)
        log.info("matrix direct chat opened")
        await self._remember(user_id, response.room_id)
        return response.room_id

    async def load(self) -> None:
        try:
            response = await self.client.list_direct_rooms()
        except NETWORK_ERRORS:
            return
        if isinstance(response, DirectRoomsResponse):
            self._account_direct = {user: list(rooms) for user, rooms in response.rooms.items()}
            for user, rooms in self._account_direct.items():
                self._direct.setdefault(user, []).extend(r for r in rooms if r not in self._direct.get(user, ()))

    async def _remember(self, user_id: str, room_id: str) -> None:
        """m.direct in the bot's account data: the direct chats the bot opened, for clients and restarts."""
        async with self._direct_lock:
            rooms = self._account_direct.setdefault(user_id, [])
            if room_id in rooms:
                return
            rooms.append(room_id)
            path = Api._build_path(["user", self.client.user_id, "account_data", "m.direct"])
            headers = {"Authorization": f"Bearer {self.client.access_token}", "Content-Type": "application/json"}
            try:
                response = await self.client.send("PUT", path, json.dumps(self._account_direct), headers)
                response.release()
            except NETWORK_ERRORS as exc:
                log.warning("matrix m.direct not updated", extra={"error": type(exc).__name__})

    def forget(self, room_id: str) -> None:
        for rooms in self._direct.values():
            if room_id in rooms:
                rooms.remove(room_id)
