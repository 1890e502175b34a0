"""TechEmpower's database tests in FastAPI with asyncpg, as
bench/db_evapi.c serves them (bench/db drives both). Run with Debian's
python3-fastapi, python3-uvicorn and python3-asyncpg:

    DB_URL=postgresql://postgres@127.0.0.1:5432/postgres POOL=8 \
    python3 -m uvicorn db_fastapi:app --app-dir bench
"""
import html
import os
import random

import asyncpg
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

DB_URL = os.environ.get("DB_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
POOL = int(os.environ.get("POOL", "8"))
SELECT = "SELECT id, randomnumber FROM world WHERE id = $1"
UPDATE = "UPDATE world SET randomnumber = $2 WHERE id = $1"

app = FastAPI()
pool = None


@app.on_event("startup")
async def startup():
    global pool
    pool = await asyncpg.create_pool(DB_URL, min_size=POOL, max_size=POOL)


@app.on_event("shutdown")
async def shutdown():
    await pool.close()


def count(queries):
    try:
        n = int(queries)
    except (TypeError, ValueError):
        return 1
    return max(1, min(500, n))


@app.get("/db")
async def db():
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SELECT, random.randint(1, 10000))
    return {"id": row[0], "randomNumber": row[1]}


@app.get("/queries")
async def queries(queries: str = "1"):
    out = []
    async with pool.acquire() as conn:
        stmt = await conn.prepare(SELECT)
        for _ in range(count(queries)):
            row = await stmt.fetchrow(random.randint(1, 10000))
            out.append({"id": row[0], "randomNumber": row[1]})
    return out


@app.get("/fortunes")
async def fortunes():
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, message FROM fortune")
    rows = [(r[0], r[1]) for r in rows]
    rows.append((0, "Additional fortune added at request time."))
    rows.sort(key=lambda r: r[1])
    body = "".join("<tr><td>%d</td><td>%s</td></tr>" % (i, html.escape(m))
                   for i, m in rows)
    return HTMLResponse(
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body>"
        "<table><tr><th>id</th><th>message</th></tr>" + body +
        "</table></body></html>", media_type="text/html; charset=utf-8")


@app.get("/updates")
async def updates(queries: str = "1"):
    out = []
    async with pool.acquire() as conn:
        stmt = await conn.prepare(SELECT)
        for _ in range(count(queries)):
            row = await stmt.fetchrow(random.randint(1, 10000))
            out.append({"id": row[0], "randomNumber": random.randint(1, 10000)})
        await conn.executemany(UPDATE, [(w["id"], w["randomNumber"]) for w in sorted(out, key=lambda w: w["id"])])
    return out
