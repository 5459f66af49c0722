# azd preprovision hook (PowerShell): check the tools, then let preprovision.py generate the
# once-only azd variables and check the models against the region (docs/deploy.md).
$ErrorActionPreference = 'Stop'
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Error "preprovision: the Azure CLI (az) is not on PATH. Install it (https://learn.microsoft.com/cli/azure/install-azure-cli), run 'az login', then 'azd provision' again."
    exit 1
}
$python = Get-Command python3, python, py -ErrorAction SilentlyContinue | Select-Object -First 1
if (-not $python) {
    Write-Error "preprovision: Python 3.11 or later is not on PATH (python3, python or py). Install it (https://www.python.org/downloads/), then 'azd provision' again."
    exit 1
}
& $python.Source (Join-Path $PSScriptRoot 'preprovision.py')
exit $LASTEXITCODE
