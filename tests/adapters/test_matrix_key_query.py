"""A device change that arrives while the bot's key query is out is asked for again (common.keys_query).

With a real matrix-nio client (its Olm machine loaded) against a loopback HTTP server that answers
/keys/query when the test says so. Found in a full test run on a slower machine: the AF's Element signed
its device while the bot's query was on its way; nio took the AF off its list with the older answer, and
the AF notification waited for the next look, a minute later."""

from __future__ import annotations

import asyncio

from aiohttp import web
from nio import AsyncClient, AsyncClientConfig, KeysQueryResponse

from meldbot.adapters.matrix.common import keys_query
from tests.support.matrix import until

AF = "@af:localhost"


async def _homeserver(answer_when: asyncio.Event | list[asyncio.Event], asked: list[list[str]]):
    """A /keys/query that answers the n-th request once the n-th event is set (one event: every request)."""
    answers = answer_when if isinstance(answer_when, list) else None

    async def query(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(sorted(body["device_keys"]))
        await (answers[len(asked) - 1] if answers else answer_when).wait()
        return web.json_response({"device_keys": {user: {} for user in body["device_keys"]}, "failures": {}})

    app = web.Application()
    app.router.add_post("/_matrix/client/v3/keys/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


async def _client(tmp_path, homeserver: str) -> AsyncClient:
    client = AsyncClient(homeserver, "@meldbot:localhost", device_id="BOTDEVICE", store_path=str(tmp_path),
                         config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
    client.restore_login("@meldbot:localhost", "BOTDEVICE", "token")   # loads the Olm machine
    return client


async def _query_with_a_change_meanwhile(client: AsyncClient, query, answer: asyncio.Event, asked: list) -> object:
    client.olm.add_changed_users({AF})
    out = asyncio.create_task(query(client))
    try:
        await until(lambda: asked, "the key query never reached the server")      # it is on its way
        client.olm.add_changed_users({AF})              # the sync says: their devices changed again
    finally:
        answer.set()
    return await out


async def test_a_change_while_the_query_is_out_is_asked_for_again(tmp_path):
    answer, asked = asyncio.Event(), []
    runner, url = await _homeserver(answer, asked)
    client = await _client(tmp_path, url)
    try:
        response = await _query_with_a_change_meanwhile(client, keys_query, answer, asked)
        assert isinstance(response, KeysQueryResponse) and asked == [[AF]]
        assert client.should_query_keys and client.users_for_key_query == {AF}   # asked for again
        await keys_query(client)                       # the next query asks, and then the list is empty
        assert asked == [[AF], [AF]] and not client.should_query_keys
    finally:
        await client.close()
        await runner.cleanup()


async def test_nio_alone_forgets_such_a_change(tmp_path):
    """Why keys_query exists: if nio ever keeps the change itself, this test says the wrapper can go."""
    answer, asked = asyncio.Event(), []
    runner, url = await _homeserver(answer, asked)
    client = await _client(tmp_path, url)
    try:
        await _query_with_a_change_meanwhile(client, lambda c: c.keys_query(), answer, asked)
        assert not client.should_query_keys
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_query_with_no_change_meanwhile_empties_the_list(tmp_path):
    answer, asked = asyncio.Event(), []
    answer.set()
    runner, url = await _homeserver(answer, asked)
    client = await _client(tmp_path, url)
    try:
        client.olm.add_changed_users({AF, "@medewerker:localhost"})
        await keys_query(client)
        assert asked == [[AF, "@medewerker:localhost"]] and not client.should_query_keys
        assert client.olm.users_for_key_query.flights == []
    finally:
        await client.close()
        await runner.cleanup()


async def test_two_queries_out_at_once_each_keep_what_changed_meanwhile(tmp_path):
    """Two sends to different rooms may ask at once; the second answered first must not take the first's
    record of changes with it."""
    first_answer, second_answer, asked = asyncio.Event(), asyncio.Event(), []
    runner, url = await _homeserver([first_answer, second_answer], asked)
    client = await _client(tmp_path, url)
    try:
        client.olm.add_changed_users({AF})
        first = asyncio.create_task(keys_query(client))
        await until(lambda: len(asked) == 1, "the first query never reached the server")
        second = asyncio.create_task(keys_query(client))
        await until(lambda: len(asked) == 2, "the second query never reached the server")
        second_answer.set()
        await second                                     # the second comes back first
        client.olm.add_changed_users({AF})               # a change while the first is still out
        first_answer.set()
        await first                                      # no error, and the change is kept
        assert client.users_for_key_query == {AF} and client.olm.users_for_key_query.flights == []
    finally:
        first_answer.set()
        second_answer.set()
        await client.close()
        await runner.cleanup()
