"""A local Azure Functions host for Python v2-model apps (never deployed).

Runs any `function_app.py` in-process with the Functions host's semantics for HTTP, queue and
timer triggers, against Azurite: `python -m devstack.functions_host [--app-dir .] [--port N]`,
or `FunctionsHost` from Python. See docs/local-host.md.
"""

from devstack.functions_host.host import FunctionsHost
from devstack.functions_host.indexing import IndexingError
from devstack.functions_host.settings import HostConfigError

__all__ = ["FunctionsHost", "HostConfigError", "IndexingError"]
