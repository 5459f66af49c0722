#!/bin/sh
# azd preprovision hook (POSIX): check the tools, then let preprovision.py generate the
# once-only azd variables and check the models against the region (docs/deploy.md).
set -eu
if ! command -v az >/dev/null 2>&1; then
  echo "preprovision: the Azure CLI (az) is not on PATH. Install it (https://learn.microsoft.com/cli/azure/install-azure-cli), run 'az login', then 'azd provision' again." >&2
  exit 1
fi
PYTHON=""
for candidate in python3 python; do
  if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
done
if [ -z "$PYTHON" ]; then
  echo "preprovision: Python 3.11 or later is not on PATH (python3 or python). Install it (https://www.python.org/downloads/), then 'azd provision' again." >&2
  exit 1
fi
exec "$PYTHON" "$(dirname "$0")/preprovision.py"
