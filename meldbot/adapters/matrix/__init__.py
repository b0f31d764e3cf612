"""Matrix as a chat platform: matrix-nio with end-to-end encryption and cross-signing.

One role per module: `session` (login, the store folder), `sync` (the sync loop and what comes in),
`outbound` (sending), `direct` (direct chats), `trust` (AF devices and identities), `cross_signing`
(the bot's own identity), `render` (Reply -> Matrix content). `adapter` composes them.
"""

from meldbot.adapters.matrix.adapter import (  # noqa: F401
    ENCRYPTION_STATE,
    MatrixAdapter,
    MatrixLoginError,
    MatrixNotifier,
    without_reply_fallback,
)
