"""fastapi_app.py: the FastAPI peer, run by bench/run on uvicorn with
uvloop and httptools. The same routes as bench/evapi_bench.c."""
import asyncio
import time

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

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


# TechEmpower's json and plaintext (uvicorn sends Server and Date)
@app.get("/json")
async def tfb_json():
    return {"message": "Hello, World!"}


@app.get("/plaintext", response_class=PlainTextResponse)
async def tfb_plaintext():
    return "Hello, World!"
