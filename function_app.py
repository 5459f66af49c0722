"""The trigger table. Each function is a few lines of wiring over `shared/`."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
