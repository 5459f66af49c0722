"""Pure pieces of the host: route templates, settings files, connections, `make run` helpers."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from devstack import run
from devstack.functions_host import host as host_module
from devstack.functions_host.connections import resolve_connection
from devstack.functions_host.http import compile_route
from devstack.functions_host.settings import (
    HostConfigError,
    apply_values,
    load_settings,
    parse_timespan,
    resolve_references,
)


@pytest.mark.parametrize(
    ("route", "path", "params"),
    [
        ("jobs/{job_id}", "/api/jobs/abc", {"job_id": "abc"}),
        ("jobs/{job_id}", "/api/JOBS/abc/", {"job_id": "abc"}),
        ("items/{id:int}", "/api/items/42", {"id": "42"}),
        ("items/{id:int}", "/api/items/x", None),
        ("files/{name?}", "/api/files", {}),
        ("files/{*rest}", "/api/files/a/b/c", {"rest": "a/b/c"}),
        ("jobs/{job_id}", "/api/jobs/abc/extra", None),
    ],
)
def test_route_templates(route: str, path: str, params: dict[str, str] | None) -> None:
    match = compile_route("api", route).match(path)
    if params is None:
        assert match is None
    else:
        assert match is not None
        assert {k: v for k, v in match.groupdict().items() if v is not None} == params


def test_timespans_as_host_json_writes_them() -> None:
    assert parse_timespan("00:00:30") == timedelta(seconds=30)
    assert parse_timespan("00:00:00.200") == timedelta(milliseconds=200)
    assert parse_timespan("1.02:00:00") == timedelta(days=1, hours=2)
    with pytest.raises(HostConfigError, match="time span"):
        parse_timespan("30s")


def test_settings_files_and_host_defaults(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    local = {"Values": {"A": "1"}, "Host": {"LocalHttpPort": 7072, "CORS": "*"}}
    (tmp_path / "local.settings.json").write_text(json.dumps(local))
    settings = load_settings(tmp_path)
    assert settings.values == {"A": "1"}
    assert settings.local_http_port == 7072
    assert settings.cors_origins == ("*",)
    assert settings.route_prefix == "api"
    assert settings.queues.batch_size == 16
    assert settings.queues.new_batch_threshold == 8
    assert settings.queues.max_dequeue_count == 5
    assert settings.queues.message_encoding == "base64"


def test_missing_host_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HostConfigError, match=r"host\.json is missing"):
        load_settings(tmp_path)


def test_environment_wins_over_local_settings_like_core_tools() -> None:
    environ = {"A": "from-env"}
    apply_values({"A": "from-file", "B": "2"}, environ)
    assert environ == {"A": "from-env", "B": "2"}


def test_app_setting_references() -> None:
    assert resolve_references("%Q%-poison", {"Q": "jobs"}) == "jobs-poison"
    with pytest.raises(HostConfigError, match="'MISSING'"):
        resolve_references("%MISSING%", {})


def test_connection_resolution() -> None:
    assert resolve_connection(None, "queue", {"AzureWebJobsStorage": "cs"}).connection_string == (
        "cs"
    )
    assert resolve_connection("Mine", "queue", {"AzureWebJobsMine": "cs2"}).connection_string == (
        "cs2"
    )
    identity = resolve_connection(
        "AzureWebJobsStorage",
        "queue",
        {
            "AzureWebJobsStorage": "",
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__clientId": "cid",
        },
    )
    assert identity.service_uri == "https://acct.queue.core.windows.net"
    assert identity.client_id == "cid"
    assert not identity.is_loopback
    with pytest.raises(HostConfigError, match="Nope__queueServiceUri"):
        resolve_connection("Nope", "queue", {})


def test_make_run_creates_local_settings_with_a_fresh_key(tmp_path: Path) -> None:
    example = {"Values": {"LOCAL_FUNCTION_KEY": "", "X": "1"}, "Host": {"LocalHttpPort": 7071}}
    (tmp_path / "local.settings.json.example").write_text(json.dumps(example))
    assert run.ensure_local_settings(tmp_path) is True
    first = json.loads((tmp_path / "local.settings.json").read_text())
    assert len(first["Values"]["LOCAL_FUNCTION_KEY"]) >= 32
    assert first["Values"]["X"] == "1"
    assert run.ensure_local_settings(tmp_path) is False  # an existing file is never touched
    (tmp_path / "local.settings.json").unlink()
    run.ensure_local_settings(tmp_path)
    second = json.loads((tmp_path / "local.settings.json").read_text())
    assert second["Values"]["LOCAL_FUNCTION_KEY"] != first["Values"]["LOCAL_FUNCTION_KEY"]


def test_make_run_examples_carry_the_key_and_the_calls() -> None:
    text = run.examples("http://127.0.0.1:7071/api", "k3y")
    assert text.count('api-key: k3y"') == 6  # a team's key, as a product team sends it
    assert "x-functions-key" not in text
    assert "/api/jobs/classifications" in text
    assert '"stream":true' in text
    assert "curl -N" in text
    assert "forbidden-violence" in text  # a filtered prompt
    assert "/api/usage?group_by=deployment" in text
    assert run.simulator_port("http://127.0.0.1:8091") == 8091
    assert run.simulator_port("https://x.openai.azure.com") == 8090


def test_listening_socket_says_tcp_so_accepted_connections_disable_nagle() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; with proto 0 every
    streamed response head waited ~40 ms for a delayed ACK (bench.chat_ttfb showed it)."""
    sock = host_module._bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
