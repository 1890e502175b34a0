"""files_fastapi.py: FastAPI's FileResponse, the peer of evapi's /static
mount in bench/files. Run on uvicorn (uvloop and httptools when
installed); WWW names the directory with the test files."""
import os

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

WWW = os.environ["WWW"]
FILES = set(os.listdir(WWW))

app = FastAPI()


@app.get("/static/{name}")
async def static(name: str):
    if name not in FILES:  # no path from the client reaches the disk
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(os.path.join(WWW, name))
