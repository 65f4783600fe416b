"""Test fixture: a connector in Python that tries every way out of the sandbox Python
offers (files, the environment, sockets, name lookup, other origins).

`pull` of entity COMMAND with cursor ARG runs one attack and answers one record whose text
fields say what happened (`tests/suite/polyglot.rs` asserts on them).
"""

import os
import socket
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import connector_api as api
from wit_world.imports import http, types


def attempt(f):
    try:
        return {"outcome": "ok", "detail": str(f())}
    except BaseException as e:  # noqa: BLE001 - every failure is reported
        return {"outcome": "error", "detail": f"{type(e).__name__}: {e}"}


def read_file(path):
    with open(path, "rb") as f:
        return f.read(4096).decode("utf-8", "replace")


def listable(path):
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=2)
    s.close()
    return "connected"


def fetch(url):
    try:
        res = http.send(http.Request(http.Method.GET, url, [], None, None))
        return {"outcome": str(res.status), "detail": res.body.decode("utf-8", "replace")}
    except Err as e:
        tag = type(e.value).__name__.split("_")[-1].lower()
        return {"outcome": tag, "detail": str(e.value)}


COMMANDS = {
    "ok": lambda arg: {"ok": "yes"},
    "preopens": lambda arg: {"count": str(listable("/") + listable("."))},
    "read-file": lambda arg: attempt(lambda: read_file(arg)),
    "env": lambda arg: {"vars": str(len(os.environ)), "args": str(len([a for a in sys.argv if a]))},
    "connect": lambda arg: attempt(lambda: connect(arg)),
    "lookup": lambda arg: attempt(lambda: socket.getaddrinfo(arg, 80)),
    "http": fetch,
}


class ConnectorApi(exports.ConnectorApi):
    def describe(self):
        return types.PluginInfo("hostile-py", "0.1.0", "fixture", [], [])

    def check(self):
        raise Err(types.Error_Fatal("fixture"))

    def schema(self, entity):
        return []

    def containers(self, entity):
        return []

    def pull(self, req):
        command = COMMANDS.get(req.entity)
        if command is None:
            raise Err(types.Error_Invalid(f"unknown command {req.entity}"))
        out = command(req.cursor or "")
        fields = [types.Field(k, types.Value_Text(v)) for k, v in out.items()]
        return api.Page([types.Record("r", None, None, fields)], [], None, False)

    def find(self, entity, query):
        return []

    def push(self, entity, writes):
        return []
