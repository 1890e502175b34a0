"""The fan-out route of examples/demo_outbound.c, in FastAPI.

GET /fan-out?n=50 gathers n calls to UPSTREAM with one shared
httpx.AsyncClient, as bench/fanout runs it against evapi's /fan-out.
Run with Debian's python3-fastapi, python3-uvicorn and python3-httpx:

    UPSTREAM=http://127.0.0.1:18301/upstream?delay_ms=100 \
    MAX_CONNECTIONS=1024 python3 -m uvicorn fanout_fastapi:app --app-dir bench
"""
import asyncio
import os

import httpx
from fastapi import FastAPI, Query

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:18301/upstream?delay_ms=100")
LIMIT = int(os.environ.get("MAX_CONNECTIONS", "1024"))

app = FastAPI()
client = None


@app.on_event("startup")
async def startup():
    global client
    client = httpx.AsyncClient(
        timeout=10.0,
        limits=httpx.Limits(max_connections=LIMIT, max_keepalive_connections=LIMIT),
    )


@app.on_event("shutdown")
async def shutdown():
    await client.aclose()


@app.get("/fan-out")
async def fan_out(n: int = Query(50, ge=1, le=500)):
    replies = await asyncio.gather(*(client.get(UPSTREAM) for _ in range(n)),
                                   return_exceptions=True)
    ok = sum(1 for r in replies
             if isinstance(r, httpx.Response) and r.status_code == 200)
    return {"calls": n, "ok": ok}
