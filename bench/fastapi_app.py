"""fastapi_app.py: the FastAPI peer, run by bench/run on uvicorn with
uvloop and httptools. The same routes as bench/evapi_bench.c."""
import asyncio
import time

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello():
    return {"Hello": "World"}


@app.get("/pool")
def hello_pool():
    return {"Hello": "World"}


@app.get("/pool-sleep")
def pool_sleep():
    time.sleep(0.05)
    return {"Hello": "World"}


@app.get("/sleep")
async def inline_sleep():
    await asyncio.sleep(1)
    return {"Hello": "World"}
