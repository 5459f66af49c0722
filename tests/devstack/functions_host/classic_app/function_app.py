"""Fixture app for the local Functions host tests: classic HTTP, queues, a timer.

Module-level state lets tests (running the host in-process, on the same event loop) see what
the functions saw and hold them mid-invocation.
"""

import asyncio
import os
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

seen: dict[str, list[object]] = {"failing": [], "record": [], "timer": [], "blocking": []}
release = asyncio.Event()
running = {"now": 0, "max": 0}


@app.route(route="hello/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["name"]
    return func.HttpResponse(
        f"hello {name} {req.params.get('x', '')}", headers={"X-Fixture": "yes"}, status_code=200
    )


@app.route(route="secret", methods=["GET", "POST"])
async def secret(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body() or b"ok")


@app.route(route="admin/thing", auth_level=func.AuthLevel.ADMIN)
def admin_thing(req: func.HttpRequest) -> str:
    return "admin ok"


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret internals")


@app.route(route="enqueue", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    return func.HttpResponse(status_code=202)


@app.queue_trigger(arg_name="msg", queue_name="%FAIL_QUEUE%", connection="AzureWebJobsStorage")
def failing(msg: func.QueueMessage) -> None:
    seen["failing"].append(msg.dequeue_count)
    raise ValueError("always fails")


@app.queue_trigger(arg_name="msg", queue_name="%RECORD_QUEUE%", connection="IdentityStorage")
def record(msg: func.QueueMessage) -> None:
    seen["record"].append((msg.get_body(), msg.dequeue_count, msg.id is not None))


@app.queue_trigger(arg_name="msg", queue_name="%BLOCK_QUEUE%", connection="AzureWebJobsStorage")
async def blocking(msg: str) -> None:
    running["now"] += 1
    running["max"] = max(running["max"], running["now"])
    seen["blocking"].append(msg)
    try:
        if not msg.startswith("quick"):
            await release.wait()
    finally:
        running["now"] -= 1


@app.queue_trigger(arg_name="msg", queue_name="%SLOW_QUEUE%", connection="AzureWebJobsStorage")
async def slow(msg: func.QueueMessage) -> None:
    marks = Path(os.environ["MARK_DIR"])
    (marks / "started").write_text(msg.get_body().decode())
    await asyncio.sleep(float(os.environ["SLOW_SECONDS"]))
    (marks / "done").write_text(msg.get_body().decode())


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", use_monitor=True)
def tick(timer: func.TimerRequest) -> None:
    seen["timer"].append(timer.past_due)


async def close_things() -> None:
    """What an app's clean-up looks like; the host calls it via --on-stop."""
    await asyncio.sleep(0)
    (Path(os.environ["MARK_DIR"]) / "closed").write_text("closed")


@app.timer_trigger(
    arg_name="timer", schedule="%STARTUP_SCHEDULE%", run_on_startup=True, use_monitor=False
)
def on_startup(timer: func.TimerRequest) -> None:
    seen.setdefault("startup", []).append(timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="%FLAKY_SCHEDULE%", use_monitor=False)
async def flaky(timer: func.TimerRequest) -> None:
    seen.setdefault("flaky", []).append(timer.past_due)
    raise RuntimeError("a failing timer keeps its schedule")
