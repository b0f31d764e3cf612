"""Logs hold no platform ids: matrix-nio's messages (which name users, devices, rooms) are counted, not written."""

from __future__ import annotations

import io
import json
import logging

from meldbot.core import logs
from meldbot.run.metrics import Metrics


def test_a_matrix_nio_warning_is_counted_and_its_ids_never_written():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("meldbot").level)
    try:
        logs.setup(level="DEBUG", json_lines=True, stream=stream)
        before = logs.library_counts.get(("nio.crypto.log", "WARNING"), 0)
        for _ in range(3):
            logging.getLogger("nio.crypto.log").warning(
                "Error decrypting megolm event from @anna:bergeijk.nl, device ABCDEFGHIJ, room !kamer:bergeijk.nl")
        logging.getLogger("nio.client.async_client").info("Syncing as @anna:bergeijk.nl")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("meldbot").setLevel(saved[2])
    written = stream.getvalue()
    assert "@anna" not in written and "ABCDEFGHIJ" not in written and "!kamer" not in written
    assert logs.library_counts[("nio.crypto.log", "WARNING")] == before + 3
    relayed = [json.loads(line) for line in written.splitlines()]
    if before == 0:  # the first of its kind is announced, without the message
        assert relayed[0]["library_logger"] == "nio.crypto.log" and relayed[0]["count"] == 1
    metrics = Metrics().render().decode()
    assert f'meldbot_library_log_records{{level="WARNING",logger="nio.crypto.log"}} {before + 3}.0' in metrics
