"""Settings validation: what start-up says when configuration is missing or wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from devstack.run import ensure_local_settings
from shared.core.settings import (
    DEFAULT_PRICES,
    Settings,
    SettingsError,
    _env_name,
    get_settings,
    load_settings,
    required_setting_names,
)
from shared.telemetry.settings import TelemetrySettings, load_telemetry_settings
from tests.support.paths import REPO_ROOT

VALID = {
    "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com/",
    "CHAT_DEPLOYMENT": "gpt-4o",
    "USER_HASH_SECRET": "unit-test-user-hash-secret-0123456789",
    "TEAM_KEY_HASH_SECRET": "unit-test-team-key-hash-secret-0123456789",
    "EMBEDDING_DEPLOYMENT": "text-embedding-3-small",
    "COSMOS_ENDPOINT": "https://example.documents.azure.com:443/",
    "AzureWebJobsStorage__queueServiceUri": "https://example.queue.core.windows.net",
}


def test_valid_identity_configuration_loads_with_defaults() -> None:
    s = load_settings(VALID)
    assert s.azure_openai_api_version == "v1"
    assert s.cosmos_database == "aoai"
    assert s.embedding_queue == "embedding-jobs"
    assert s.batch_poll_schedule == "0 */5 * * * *"
    assert s.content_filter_store_text is False
    assert s.classification_deployment == "gpt-4o"
    assert s.azure_openai_api_key is None
    assert not s.uses_openai_api


@pytest.mark.parametrize("name", ["CHAT_DEPLOYMENT", "EMBEDDING_DEPLOYMENT", "COSMOS_ENDPOINT"])
def test_missing_required_setting_is_named(name: str) -> None:
    env = {k: v for k, v in VALID.items() if k != name}
    with pytest.raises(SettingsError, match=f"missing required setting: {name}"):
        load_settings(env)


def test_missing_endpoint_and_openai_key_is_named() -> None:
    env = {k: v for k, v in VALID.items() if k != "AZURE_OPENAI_ENDPOINT"}
    with pytest.raises(SettingsError, match=r"AZURE_OPENAI_ENDPOINT \(or OPENAI_API_KEY"):
        load_settings(env)


def test_missing_storage_connection_is_named() -> None:
    env = {k: v for k, v in VALID.items() if not k.startswith("AzureWebJobsStorage")}
    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AOAI_DEPLOYMENTS", "{not json", "invalid setting AOAI_DEPLOYMENTS: not valid JSON"),
        ("AZURE_OPENAI_ENDPOINT", "not a url", "invalid setting AZURE_OPENAI_ENDPOINT"),
        ("AOAI_MAX_RETRIES", "-1", "invalid setting AOAI_MAX_RETRIES"),
        ("EMBEDDING_QUEUE", "Bad_Queue", "invalid setting EMBEDDING_QUEUE"),
        ("CONTENT_FILTER_STORE_TEXT", "perhaps", "invalid setting CONTENT_FILTER_STORE_TEXT"),
        ("AOAI_QUOTAS", "{not json", "invalid setting AOAI_QUOTAS: not valid JSON"),
        ("AOAI_QUOTAS", '{"emb": {"tpm": 0}}', "invalid setting AOAI_QUOTAS"),
        ("AOAI_QUOTAS", '{"emb": {"tpm": 1000, "rpmm": 6}}', "invalid setting AOAI_QUOTAS"),
        ("MODEL_PRICES", '{"m": {"input": 1, "cached_input": -1}}', "invalid setting MODEL_PRICES"),
        ("MODEL_PRICES", '{"m": {"input": 1, "cached_input": 2}}', "cached_input above input"),
    ],
)
def test_invalid_value_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({**VALID, name: value})


def test_model_prices_take_an_optional_cached_input_price() -> None:
    prices = {"gpt-5.4": {"input": 2.5, "cached_input": 0.25, "output": 15}, "e": {"input": 0.02}}
    settings = load_settings({**VALID, "MODEL_PRICES": json.dumps(prices)})
    assert settings.model_prices["gpt-5.4"].cached_input == 0.25
    assert settings.model_prices["e"].cached_input is None
    # The defaults carry the list prices of cached input of the chat models (a tenth of the
    # input price for gpt-5.x, a half or a quarter for the gpt-4 family).
    assert DEFAULT_PRICES["gpt-5.4"].cached_input == 0.25
    assert DEFAULT_PRICES["gpt-4o"].cached_input == 1.25


def test_quotas_default_rpm_to_6_per_1000_tpm() -> None:
    raw = '{"text-embedding-3-small": {"tpm": 350000}, "gpt-4o": {"tpm": 1000, "rpm": 50}}'
    quotas = load_settings({**VALID, "AOAI_QUOTAS": raw}).aoai_quotas
    assert quotas["text-embedding-3-small"].requests_per_minute == 2100
    assert quotas["gpt-4o"].requests_per_minute == 50
    assert load_settings(VALID).aoai_quotas == {}


def test_secrets_never_show_in_repr() -> None:
    s = load_settings({**VALID, "AZURE_OPENAI_API_KEY": "super-secret-key"})
    assert "super-secret-key" not in repr(s)
    assert s.azure_openai_api_key is not None
    assert s.azure_openai_api_key.get_secret_value() == "super-secret-key"


def test_blank_key_means_unset() -> None:
    assert load_settings({**VALID, "AZURE_OPENAI_API_KEY": "  "}).azure_openai_api_key is None


def test_openai_api_mode_needs_no_azure_endpoint() -> None:
    env = {k: v for k, v in VALID.items() if k != "AZURE_OPENAI_ENDPOINT"}
    s = load_settings({**env, "OPENAI_API_KEY": "sk-test"})
    assert s.uses_openai_api


def test_names_are_case_insensitive_like_app_settings() -> None:
    env = {k: v for k, v in VALID.items() if k != "CHAT_DEPLOYMENT"}
    assert load_settings({**env, "Chat_Deployment": "mixed"}).chat_deployment == "mixed"


def test_every_field_is_documented() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


def test_required_names_cover_required_fields_and_identity_storage() -> None:
    names = required_setting_names()
    assert {"CHAT_DEPLOYMENT", "EMBEDDING_DEPLOYMENT", "COSMOS_ENDPOINT"} <= names
    assert "AzureWebJobsStorage__queueServiceUri" in names
    # TEAM_KEY_HASH_SECRET is the HMAC key team keys are hashed with (a Key Vault reference,
    # like USER_HASH_SECRET), not a key to any service.
    access = names - {"TEAM_KEY_HASH_SECRET"}
    assert not any("KEY" in n for n in access), "no key setting is required in Azure"


def test_get_settings_reads_the_process_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get_settings.cache_clear()
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    try:
        first = get_settings()
        monkeypatch.setenv("CHAT_DEPLOYMENT", "changed")
        assert get_settings() is first
        assert first.chat_deployment == "gpt-4o"
    finally:
        get_settings.cache_clear()


def test_every_setting_is_in_the_example_and_the_reference() -> None:
    """The example and docs/configuration.md list every setting; the example loads."""
    root = REPO_ROOT
    example = json.loads((root / "local.settings.json.example").read_text())["Values"]
    reference = (root / "docs" / "configuration.md").read_text()
    names = [_env_name(n) for n in Settings.model_fields]
    names += [n.upper() for n in TelemetrySettings.model_fields if n != "azure_client_id"]
    assert [n for n in names if n not in example] == []
    assert [n for n in names if f"`{n}`" not in reference] == []
    assert example["USER_HASH_SECRET"] == "", "secrets are generated, never committed"
    assert example["TEAM_KEY_HASH_SECRET"] == ""
    assert example["LOCAL_MASTER_KEY"] == ""
    assert not load_telemetry_settings(example).exporting, "telemetry is off until asked for"


def test_make_run_generates_the_secrets_the_example_leaves_empty(tmp_path: Path) -> None:
    """`make run` writes local.settings.json from the example with fresh secrets, and fills
    them into an older local.settings.json that lacks them; the result loads."""
    root = REPO_ROOT
    shutil.copy(root / "local.settings.json.example", tmp_path / "local.settings.json.example")
    assert ensure_local_settings(tmp_path) is True
    first = json.loads((tmp_path / "local.settings.json").read_text())["Values"]
    assert len(first["USER_HASH_SECRET"]) >= 32
    assert len(first["TEAM_KEY_HASH_SECRET"]) >= 32
    assert first["TEAM_KEY_HASH_SECRET"] != first["USER_HASH_SECRET"]
    assert first["LOCAL_FUNCTION_KEY"]
    assert first["LOCAL_MASTER_KEY"] not in ("", first["LOCAL_FUNCTION_KEY"])
    load_settings(first)
    older = {**first, "USER_HASH_SECRET": ""}
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": older}))
    assert ensure_local_settings(tmp_path) is False
    again = json.loads((tmp_path / "local.settings.json").read_text())["Values"]
    assert again["LOCAL_FUNCTION_KEY"] == first["LOCAL_FUNCTION_KEY"]
    assert again["USER_HASH_SECRET"] not in ("", first["USER_HASH_SECRET"])


def test_a_short_user_hash_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="USER_HASH_SECRET must be at least 32"):
        load_settings({**VALID, "USER_HASH_SECRET": "short"})


@pytest.mark.parametrize("value", ["", "short", "x" * 31])
def test_a_missing_or_short_team_key_hash_secret_stops_start_up(value: str) -> None:
    with pytest.raises(SettingsError, match="TEAM_KEY_HASH_SECRET"):
        load_settings({**VALID, "TEAM_KEY_HASH_SECRET": value})
    without = {k: v for k, v in VALID.items() if k != "TEAM_KEY_HASH_SECRET"}
    with pytest.raises(SettingsError, match="TEAM_KEY_HASH_SECRET"):
        load_settings(without)


def test_an_unresolved_key_vault_reference_is_not_taken_for_the_team_key_secret() -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/team-key)"
    with pytest.raises(SettingsError, match="TEAM_KEY_HASH_SECRET is an unresolved Key Vault"):
        load_settings({**VALID, "TEAM_KEY_HASH_SECRET": reference})


def test_an_unresolved_key_vault_reference_is_not_taken_for_the_secret() -> None:
    reference = (
        "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/user-hash-secret)"
    )
    with pytest.raises(SettingsError, match="unresolved Key Vault reference"):
        load_settings({**VALID, "USER_HASH_SECRET": reference})
