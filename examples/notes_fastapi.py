"""examples/notes.c in FastAPI, to compare their sizes (Debian 12's
python3-fastapi, python3-httpx and uvicorn):

    cd examples && NOTES_ANALYSER=http://127.0.0.1:8001 python3 -m uvicorn notes_fastapi:app
"""
import asyncio
import json
import secrets
import sqlite3

import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Path, Security
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, BaseSettings, Field


class Settings(BaseSettings):
    notes_api_key: str = "dev-key"
    notes_analyser: str = "http://127.0.0.1:8001"
    notes_db: str = ":memory:"


settings = Settings()
db = sqlite3.connect(settings.notes_db, check_same_thread=False)
db.row_factory = sqlite3.Row
db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, "
           "title TEXT NOT NULL, text TEXT NOT NULL)")
listeners: set[asyncio.Queue] = set()
app = FastAPI()


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    text: str = ""


class Note(NoteIn):
    id: int


class Page(BaseModel):
    items: list[Note]


def api_key(key: str = Security(APIKeyHeader(name="X-API-Key"))):
    if not secrets.compare_digest(key, settings.notes_api_key):
        raise HTTPException(403, "Invalid authentication credentials")


def find(id: int) -> dict:
    row = db.execute("SELECT id, title, text FROM notes WHERE id = ?", (id,)).fetchone()
    if row is None:
        raise HTTPException(404, "Note not found")
    return dict(row)


def upstream_error(e: httpx.HTTPError) -> HTTPException:
    if isinstance(e, httpx.TimeoutException):
        return HTTPException(504, "Upstream timed out")
    return HTTPException(502, f"Bad gateway: {e.__class__.__name__}")


async def publish(note: dict):  # a background task, after the reply
    for q in listeners:
        q.put_nowait(json.dumps(note))


@app.post("/notes", status_code=201, response_model=Note, dependencies=[Depends(api_key)])
def create(note: NoteIn, tasks: BackgroundTasks):
    row = dict(db.execute("INSERT INTO notes (title, text) VALUES (?, ?) "
                          "RETURNING id, title, text", (note.title, note.text)).fetchone())
    db.commit()
    tasks.add_task(publish, row)
    return row


@app.get("/notes", response_model=Page)
def list_notes():
    return {"items": [dict(r) for r in db.execute("SELECT id, title, text FROM notes ORDER BY id")]}


@app.get("/notes/{id}", response_model=Note)
def get_note(id: int = Path(ge=1)):
    return find(id)


@app.get("/notes/{id}/enriched")
def enriched(id: int = Path(ge=1)):  # a plain def: on the thread pool, may block
    note = find(id)
    try:
        r = httpx.post(settings.notes_analyser + "/analyse", json=note)
        r.raise_for_status()
    except httpx.HTTPError as e:
        raise upstream_error(e)
    return {**note, "analysis": r.json()}


@app.post("/notes/preview")
async def preview(note: NoteIn):  # on the event loop: awaits, never blocks
    try:
        async with httpx.AsyncClient() as client:
            r = await client.post(settings.notes_analyser + "/analyse", json=note.dict())
        r.raise_for_status()
    except httpx.HTTPError as e:
        raise upstream_error(e)
    return {"analysis": r.json()}


@app.get("/feed")
async def feed():
    q: asyncio.Queue = asyncio.Queue()
    listeners.add(q)

    async def events():
        try:
            while True:
                yield f"data: {await q.get()}\n\n"
        finally:
            listeners.discard(q)
    return StreamingResponse(events(), media_type="text/event-stream")

