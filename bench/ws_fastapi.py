"""bench/ws_fastapi.py: FastAPI's side of bench/ws, the same two routes as
evapi's demo (examples/demo_ws.c), written the way FastAPI's WebSocket
docs do: /ws/echo sends back every message; /ws/chat/{room} sends what
one member says to every member (the docs' ConnectionManager).

Run: uvicorn ws_fastapi:app --app-dir bench --ws websockets
"""
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
rooms: dict[str, set[WebSocket]] = {}


@app.websocket("/ws/echo")
async def echo(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("text") is not None:
                await ws.send_text(msg["text"])
            else:
                await ws.send_bytes(msg["bytes"])
    except WebSocketDisconnect:
        pass


@app.websocket("/ws/chat/{room}")
async def chat(ws: WebSocket, room: str):
    await ws.accept()
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            for m in list(members):
                try:
                    await m.send_text(text)
                except Exception:
                    members.discard(m)
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(ws)
