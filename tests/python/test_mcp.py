"""The task tools over MCP, seen by the official MCP Python SDK (PyPI `mcp`):
Streamable HTTP at the gateway's /mcp (with a bearer JWT) and stdio through
`taskagent mcp --user ID`, against the real launcher (TASKAGENT_BIN, default
target/debug/taskagent)."""

import asyncio
import json
import os
import pathlib
import tempfile

import pytest
from support import TASKAGENT, Launcher
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

TOOLS = ["add_task", "list_tasks", "get_task", "complete_task", "delete_task", "update_task"]



@pytest.fixture(scope="module")
def launcher():
    running = Launcher()
    yield running
    running.close()


async def over_http(url: str, token: str, use):
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await use(session)


def wire(model) -> dict:
    """A result or tool as it is on the wire (camelCase), whatever the SDK's attribute names."""
    return model.model_dump(by_alias=True, exclude_none=True)


def structured(result):
    data = wire(result)
    assert data.get("isError") is not True, data
    assert json.loads(data["content"][0]["text"]) == data["structuredContent"], "the same JSON as text"
    return data["structuredContent"]


def test_tools_are_listed_with_annotations_and_schemas(launcher):
    async def use(session):
        return (await session.list_tools()).tools

    tools = {t.name: wire(t) for t in asyncio.run(over_http(launcher.url, launcher.token("alice"), use))}
    assert sorted(tools) == sorted(TOOLS)
    hints = {n: tuple(t["annotations"].get(k) for k in ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"))
             for n, t in tools.items()}
    assert hints["list_tasks"] == (True, False, True, False)
    assert hints["get_task"] == (True, False, True, False)
    assert hints["delete_task"] == (False, True, True, False)
    assert hints["update_task"] == (False, True, False, False)
    assert hints["complete_task"] == (False, False, True, False)
    assert hints["add_task"] == (False, False, False, False)
    for tool in tools.values():
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"
        assert "user_id" not in json.dumps(tool["inputSchema"])


def test_every_tool_works_and_a_missing_task_is_an_error_result(launcher):
    async def use(session):
        added = structured(await session.call_tool("add_task", {"title": "Buy milk", "description": "oat"}))
        assert added["status"] == "created" and added["title"] == "Buy milk"
        task_id = added["task_id"]
        got = structured(await session.call_tool("get_task", {"task_id": task_id}))
        assert got == {"id": task_id, "title": "Buy milk", "description": "oat", "completed": False}
        updated = structured(await session.call_tool("update_task", {"task_id": task_id, "title": "Buy oat milk"}))
        assert updated == {"task_id": task_id, "status": "updated", "title": "Buy oat milk"}
        done = structured(await session.call_tool("complete_task", {"task_id": task_id}))
        assert done["status"] == "completed"
        structured(await session.call_tool("add_task", {"title": "Second"}))
        page = structured(await session.call_tool("list_tasks", {"status": "all", "limit": 1}))
        assert len(page["tasks"]) == 1 and page["has_more"] is True and page["next_cursor"]
        rest = structured(await session.call_tool("list_tasks", {"status": "all", "limit": 1, "cursor": page["next_cursor"]}))
        assert [t["title"] for t in rest["tasks"]] == ["Second"] and rest["has_more"] is False
        deleted = structured(await session.call_tool("delete_task", {"task_id": task_id}))
        assert deleted["status"] == "deleted"
        missing = wire(await session.call_tool("get_task", {"task_id": task_id}))
        assert missing["isError"] is True
        assert "structuredContent" not in missing, "an error result does not claim the success schema"
        assert json.loads(missing["content"][0]["text"]) == {"status": "error", "error": "Task not found"}
        invalid = wire(await session.call_tool("add_task", {"title": "x" * 201}))
        assert invalid["isError"] is True and "structuredContent" not in invalid
        assert json.loads(invalid["content"][0]["text"])["error"] == "Title exceeds 200 characters"

    asyncio.run(over_http(launcher.url, launcher.token("alice"), use))

    async def others(session):
        return structured(await session.call_tool("list_tasks", {}))

    assert asyncio.run(over_http(launcher.url, launcher.token("bob"), others))["tasks"] == [], "per user"


def test_no_token_is_401(launcher):
    import httpx2

    response = httpx2.post(launcher.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                           headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated"}


def test_read_only_mode_hides_the_write_tools_and_hosts_are_checked():
    running = Launcher(MCP_READ_ONLY="true", MCP_ALLOWED_HOSTS="tasks.example.com")
    try:
        async def use(session):
            return sorted(t.name for t in (await session.list_tools()).tools)

        token = running.token("alice")
        assert asyncio.run(over_http(running.url, token, use)) == ["get_task", "list_tasks"]
        import httpx2

        def status_with_host(host):
            return httpx2.post(running.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                               headers={"Authorization": f"Bearer {token}", "Host": host,
                                        "Accept": "application/json, text/event-stream",
                                        "MCP-Protocol-Version": "2025-06-18"}).status_code

        assert status_with_host("tasks.example.com") == 200, "a configured deployment host is accepted"
        assert status_with_host("evil.example") == 403, "DNS-rebinding protection stays on"
    finally:
        running.close()


def test_stdio_transport_through_taskagent_mcp():
    with tempfile.TemporaryDirectory() as folder:
        params = StdioServerParameters(command=TASKAGENT, args=["mcp", "--user", "desktop"], cwd=folder,
                                       env={"PATH": os.environ.get("PATH", ""), "LOG_LEVEL": "warn"})

        async def run():
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    names = sorted(t.name for t in (await session.list_tools()).tools)
                    added = structured(await session.call_tool("add_task", {"title": "From the desktop"}))
                    listed = structured(await session.call_tool("list_tasks", {}))
                    return names, added, listed

        names, added, listed = asyncio.run(run())
        assert names == sorted(TOOLS)
        assert added["title"] == "From the desktop"
        assert [t["title"] for t in listed["tasks"]] == ["From the desktop"]
        assert (pathlib.Path(folder) / "taskagent.db").exists(), "an in-process tool-service on the default SQLite file"
