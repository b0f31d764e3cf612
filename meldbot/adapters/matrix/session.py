"""Login and the store folder: the store folder is the bot's device (keys, device id, access token)."""

from __future__ import annotations

from pathlib import Path

from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

from meldbot.adapters.matrix.common import JsonFile, MatrixLoginError, log


def new_client(settings, folder: Path, request_timeout: float) -> AsyncClient:
    return AsyncClient(
        settings.homeserver, settings.user_id, store_path=str(folder),
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=0,
                                 request_timeout=request_timeout),
    )


class Session:
    """Restores the saved device or logs in once; `credentials.json` keeps the device for next time."""

    def __init__(self, settings, folder: Path) -> None:
        self._settings = settings
        self.credentials = JsonFile(folder / "credentials.json")

    async def login(self, client: AsyncClient) -> bool:
        """Returns True when a new device was made (a first start, or a fresh store folder)."""
        settings = self._settings
        saved = self.credentials.load()
        if saved and saved.get("user_id") == settings.user_id and saved.get("homeserver") == client.homeserver:
            client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
            log.info("matrix device restored from the store")
            return False
        token = settings.access_token.get_secret_value()
        if token:
            client.access_token = token
            who = await client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise MatrixLoginError(f"access token refused: {getattr(who, 'status_code', '?')}")
            if not who.device_id:
                raise MatrixLoginError("the access token belongs to no device")
            client.restore_login(who.user_id, who.device_id, token)
        else:
            response = await client.login(settings.password.get_secret_value(), device_name=settings.device_name)
            if not isinstance(response, LoginResponse):
                raise MatrixLoginError(f"login refused: {getattr(response, 'status_code', '?')}")
        # From now on the store folder is the device: a new login would be a new device that cannot read
        # anything sent before.
        self.credentials.save({"homeserver": client.homeserver, "user_id": client.user_id,
                               "device_id": client.device_id, "access_token": client.access_token})
        log.info("matrix device created")
        return True
