"""Config files, the control plane and the command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import AzureOpenAI
from pydantic import ValidationError

from devstack.aoai_simulator import SimulatorConfig, load_config, start_simulator

from .conftest import API_VERSION, Control

ROOT = Path(__file__).resolve().parents[3]

YAML = """
deployments:
  - {name: chat-a, model: gpt-4o-mini, kind: chat, rpm: 5, tpm: 5000}
  - {name: emb, model: text-embedding-3-large, kind: embedding}
api_keys: [k1]
latency: {request_ms: 1}
faults: {chat: {error_500: 0.1}}
filter_rules:
  - {name: r, category: hate, severity: high, regex: "bad+word"}
batch: {validating_seconds: 2}
"""


def test_load_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "sim.yaml"
    yaml_file.write_text(YAML)
    config = load_config(yaml_file)
    assert [d.name for d in config.deployments] == ["chat-a", "emb"]
    assert config.deployment("emb") is not None
    assert config.deployment("emb").embedding_size() == 3072  # type: ignore[union-attr]
    assert config.faults["chat"].error_500 == 0.1
    json_file = tmp_path / "sim.json"
    json_file.write_text(json.dumps(config.model_dump(mode="json")))
    assert load_config(json_file) == config


def test_unknown_options_are_errors() -> None:
    with pytest.raises(ValidationError):
        SimulatorConfig.model_validate({"deployments": [], "typo": 1})
    with pytest.raises(ValidationError):
        SimulatorConfig.model_validate(
            {"deployments": [{"name": "a", "model": "m", "kind": "chat"}] * 2}
        )


def test_patch_merges_and_get_reflects(control: Control) -> None:
    patched = control.patch({"deployments": {"gpt-4o": {"rpm": 7}}, "latency": {"request_ms": 1}})
    gpt = next(d for d in patched["deployments"] if d["name"] == "gpt-4o")
    assert gpt["rpm"] == 7
    assert gpt["tpm"] == 1_000_000
    assert len(patched["deployments"]) == 4
    current = httpx.get(f"{control.url}/sim/config").json()
    assert current == patched
    control.reset(config=True)
    restored = httpx.get(f"{control.url}/sim/config").json()
    assert next(d for d in restored["deployments"] if d["name"] == "gpt-4o")["rpm"] == 6000


def test_stats_by_route_and_deployment(client: AzureOpenAI, control: Control) -> None:
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "echo: a b"}]
    )
    client.embeddings.create(model="text-embedding-3-small", input="abcd")
    stats = control.stats()
    assert stats["routes"]["chat"]["completion_tokens"] == 2
    assert stats["deployments"]["text-embedding-3-small"]["prompt_tokens"] == 1
    assert stats["total"]["requests"] == 2
    control.reset(config=False)
    assert control.stats()["total"]["requests"] == 0


def test_custom_config_in_process() -> None:
    config = SimulatorConfig.model_validate({"api_keys": ["own-key"]})
    with start_simulator(config, port=0) as sim:
        assert sim.api_key == "own-key"
        client = AzureOpenAI(azure_endpoint=sim.url, api_key="own-key", api_version=API_VERSION)
        assert client.embeddings.create(model="text-embedding-3-small", input="x").data
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.url}/sim/stats")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_command_line(tmp_path: Path) -> None:
    config_file = tmp_path / "sim.yaml"
    config_file.write_text(YAML)
    port = _free_port()
    args = [sys.executable, "-m", "devstack.aoai_simulator", "--port", str(port)]
    args += ["--config", str(config_file), "--log-level", "warning"]
    process = subprocess.Popen(args, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/sim/config").json()
                break
            except httpx.ConnectError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert config["api_keys"] == ["k1"]
    finally:
        process.terminate()
        process.wait(10)
