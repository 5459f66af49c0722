"""azd preprovision hook: set the generated azd variables once, then check the models.

Run by infra/hooks/preprovision.sh / .ps1 (which check that `az` and Python exist). Offline
testable: every call to a CLI goes through `azd` / `az` on PATH, and `decide` is pure.

1. `USER_HASH_SECRET` and `TEAM_KEY_HASH_SECRET` (HMAC keys, written to Key Vault) and
   `BUDGET_START_DATE` (first day of this month; Azure refuses to move a budget's start) are
   generated when the azd environment has none, with `azd env set`, so every later
   `azd provision` reuses them.
2. For each deployment, the chosen model, version and SKU are looked up in
   `az cognitiveservices model list --location <region>` (a JSON list of
   {"kind", "skuName", "model": {"format", "name", "version", "lifecycleStatus",
   "isDefaultVersion", "deprecation": {"inference", "fineTune"}, "capabilities",
   "skus": [{"name", "deprecationDate", ...}]}}). A choice that is missing, or whose SKU or
   inference date has passed, stops `azd provision` with exit code 1 and a message naming a
   replacement that the region does offer. Defaults come from infra/main.parameters.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARAMETERS = Path(__file__).resolve().parents[1] / "main.parameters.json"
INSTALL_AZ = "https://learn.microsoft.com/cli/azure/install-azure-cli"

# deployment -> (azd variable prefix, model capability it needs)
DEPLOYMENTS = {
    "chat": ("CHAT", "chatCompletion"),
    "embedding": ("EMBEDDING", "embeddings"),
    "batch": ("BATCH", "chatCompletion"),
}


@dataclass(frozen=True)
class Choice:
    deployment: str
    variable: str  # CHAT, EMBEDDING, BATCH
    capability: str
    name: str
    version: str  # '' lets the service pick the model's default version
    sku: str


def azd_defaults(path: Path = PARAMETERS) -> dict[str, str]:
    """`VAR` -> default of every `${VAR=default}` in main.parameters.json (one source)."""
    text = json.loads(path.read_text())
    found: dict[str, str] = {}
    for entry in text["parameters"].values():
        match = re.fullmatch(r"\$\{(\w+)=([^}]*)\}", str(entry.get("value", "")))
        if match:
            found[match.group(1)] = match.group(2)
    return found


def choices(env: Mapping[str, str], defaults: Mapping[str, str]) -> list[Choice]:
    def value(name: str) -> str:
        return env.get(name) or defaults.get(name, "")

    return [
        Choice(
            deployment=deployment,
            variable=var,
            capability=capability,
            name=value(f"{var}_MODEL_NAME"),
            version=env.get(f"{var}_MODEL_VERSION", defaults.get(f"{var}_MODEL_VERSION", "")),
            sku=value(f"{var}_SKU"),
        )
        for deployment, (var, capability) in DEPLOYMENTS.items()
    ]


def _date(text: Any) -> dt.date | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).date()


def _open_sku(model: Mapping[str, Any], sku: str, today: dt.date) -> dt.date | None:
    """The date until which `sku` takes new deployments of `model` (date.max: no end);
    None when the SKU is not offered or already closed."""
    inference = _date((model.get("deprecation") or {}).get("inference"))
    if inference is not None and inference <= today:
        return None
    for offered in model.get("skus") or []:
        if offered.get("name") != sku:
            continue
        closes = _date(offered.get("deprecationDate"))
        if closes is None or closes > today:
            return min(closes or dt.date.max, inference or dt.date.max)
    return None


def replacement(
    models: list[dict[str, Any]], choice: Choice, today: dt.date
) -> tuple[str, str, dt.date] | None:
    """The GA model of the same capability that stays open for this SKU the longest."""
    best: tuple[str, str, dt.date] | None = None
    for entry in models:
        model = entry.get("model") or {}
        if model.get("format") != "OpenAI":
            continue
        if str((model.get("capabilities") or {}).get(choice.capability, "")).lower() != "true":
            continue
        if str(model.get("lifecycleStatus", "")).lower() not in ("generallyavailable", "stable"):
            continue
        until = _open_sku(model, choice.sku, today)
        if until is None:
            continue
        candidate = (str(model["name"]), str(model["version"]), until)
        if best is None or (until, candidate[1]) > (best[2], best[1]):
            best = candidate
    return best


def decide(models: list[dict[str, Any]], choice: Choice, today: dt.date) -> list[str]:
    """Problems with one deployment's choice (empty: deployable today)."""
    offered = [
        e.get("model") or {}
        for e in models
        if (e.get("model") or {}).get("format") == "OpenAI"
        and (e.get("model") or {}).get("name") == choice.name
    ]
    label = f"{choice.name} {choice.version or '(default version)'} {choice.sku}"
    if choice.version:
        matching = [m for m in offered if m.get("version") == choice.version]
    else:
        matching = [m for m in offered if m.get("isDefaultVersion")] or offered[:1]
    problem = ""
    if not offered:
        problem = f"{choice.name} is not offered in this region"
    elif not matching:
        versions = ", ".join(sorted({str(m.get("version")) for m in offered}))
        problem = f"{choice.name} has no version {choice.version} here (offered: {versions})"
    else:
        model = matching[0]
        skus = {s.get("name"): s for s in model.get("skus") or []}
        inference = _date((model.get("deprecation") or {}).get("inference"))
        closes = _date((skus.get(choice.sku) or {}).get("deprecationDate"))
        if choice.sku not in skus:
            problem = (
                f"{label}: SKU {choice.sku} is not offered (offered: {', '.join(sorted(skus))})"
            )
        elif inference is not None and inference <= today:
            problem = f"{label}: retired on {inference}"
        elif closes is not None and closes <= today:
            problem = f"{label}: closed to new deployments (new customers) since {closes}"
    if not problem:
        return []
    lines = [f"{choice.deployment}: {problem}."]
    better = replacement(models, choice, today)
    if better is None:
        lines.append(f"  No model in this region offers {choice.sku}; try another region.")
    else:
        name, version, until = better
        open_until = "" if until == dt.date.max else f" (open to new deployments until {until})"
        lines.append(
            f"  Replacement{open_until}: azd env set {choice.variable}_MODEL_NAME {name} && "
            f"azd env set {choice.variable}_MODEL_VERSION {version}"
        )
    return lines


class CommandFailed(RuntimeError):
    pass


def _run(command: list[str]) -> str:
    # Fixed argument lists, no shell: the only inputs are azd variables of this environment.
    proc = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise CommandFailed(f"`{' '.join(command[:4])} ...` failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def ensure_env(env: Mapping[str, str], today: dt.date) -> list[str]:
    """Set the once-generated azd variables the environment lacks; return their names."""
    generated = {
        "USER_HASH_SECRET": secrets.token_urlsafe(48),  # 64 characters; the app needs 32
        "TEAM_KEY_HASH_SECRET": secrets.token_urlsafe(48),
        "BUDGET_START_DATE": today.replace(day=1).isoformat(),
    }
    target = ["--environment", env["AZURE_ENV_NAME"]] if env.get("AZURE_ENV_NAME") else []
    done = []
    for name, value in generated.items():
        if not env.get(name):
            _run(["azd", "env", "set", name, value, *target])
            done.append(name)
    return done


def regions(env: Mapping[str, str], defaults: Mapping[str, str]) -> list[str]:
    primary = env.get("AZURE_OPENAI_LOCATION") or env.get("AZURE_LOCATION", "")
    found = [primary]
    if (env.get("SPILLOVER_OPENAI") or defaults.get("SPILLOVER_OPENAI", "")).lower() == "true":
        found.append(env.get("SPILLOVER_OPENAI_LOCATION") or env.get("AZURE_LOCATION", ""))
    return list(dict.fromkeys(r for r in found if r))


def main(env: Mapping[str, str] = os.environ, today: dt.date | None = None) -> int:
    today = today or dt.datetime.now(dt.UTC).date()
    if shutil.which("az") is None:
        print(
            f"preprovision: the Azure CLI (az) is not on PATH. Install it ({INSTALL_AZ}), "
            "run `az login`, then `azd provision` again.",
            file=sys.stderr,
        )
        return 1
    defaults = azd_defaults()
    for name in ensure_env(env, today):
        print(f"preprovision: generated {name} and stored it in the azd environment.")
    failed = False
    for region in regions(env, defaults) or [""]:
        if not region:
            print(
                "preprovision: AZURE_LOCATION is not set (azd env set AZURE_LOCATION <region>).",
                file=sys.stderr,
            )
            return 1
        models = json.loads(
            _run(
                [
                    "az",
                    "cognitiveservices",
                    "model",
                    "list",
                    "--location",
                    region,
                    "--output",
                    "json",
                ]
            )
        )
        wanted = choices(env, defaults)
        if region != regions(env, defaults)[0]:  # the spill-over account has no batch deployment
            wanted = [c for c in wanted if c.deployment != "batch"]
        for choice in wanted:
            problems = decide(models, choice, today)
            for line in problems:
                print(f"preprovision [{region}] {line}", file=sys.stderr)
            failed = failed or bool(problems)
    if failed:
        print(
            "preprovision: the model choice above cannot be deployed by this subscription; "
            "set the replacement and run `azd provision` again (docs/deploy.md, "
            "Choosing models).",
            file=sys.stderr,
        )
        return 1
    print("preprovision: models, versions and SKUs are deployable in this region.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CommandFailed as error:
        print(f"preprovision: {error} (is `az login` done?)", file=sys.stderr)
        sys.exit(1)
