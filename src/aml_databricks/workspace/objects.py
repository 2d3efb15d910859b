"""The Workspace API: notebooks, files and folders, stored in SQLite.

Notebooks are kept in the Databricks source format (what export SOURCE returns); a Jupyter
import is converted on the way in and back on the way out. Files are kept as bytes.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import sqlite3
from pathlib import Path
from typing import Any

from aml_databricks import notebooks
from aml_databricks.workspace.errors import (
    DirectoryNotEmpty,
    InvalidParameterValue,
    PathNotFound,
    ResourceAlreadyExists,
    SourceNotFound,
)
from aml_databricks.workspace.paths import is_dbfs_file, is_local_file, normalize_path
from aml_databricks.workspace.storage_paths import StoragePaths
from aml_databricks.workspace.store import Store

IMPORT_FORMATS = ("SOURCE", "JUPYTER", "AUTO", "RAW")
EXPORT_FORMATS = ("SOURCE", "JUPYTER", "AUTO", "RAW")
LANGUAGES = ("PYTHON", "SQL", "SCALA", "R")
MAX_IMPORT_BYTES = 10 * 1024 * 1024
ALWAYS_THERE = ("/", "/Users", "/Shared", "/Repos")
FILE_TYPES = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}
NOTEBOOK_EXTENSIONS = (".py", ".sql", ".scala", ".r", ".ipynb")


class Objects:
    def __init__(self, store: Store, storage: StoragePaths | None = None) -> None:
        self.store = store
        self.storage = storage  # where a task's `dbfs:/` python_file is read from

    # -- reads ----------------------------------------------------------------------------

    def status(self, path: str) -> dict[str, Any]:
        path = normalize_path(path)
        row = self.store.get_object(path)
        if row is None:
            if path in ALWAYS_THERE or (path.startswith("/Users/") and path.count("/") == 2):
                return {"object_type": "DIRECTORY", "path": path, "object_id": 0, "resource_id": "0"}
            raise PathNotFound(path)
        return _describe(row)

    def list(self, path: str) -> list[dict[str, Any]]:
        info = self.status(path)
        if info["object_type"] != "DIRECTORY":
            return [info]
        return [_describe(row) for row in self.store.children(info["path"])]

    def export(self, path: str, fmt: str) -> tuple[bytes, str]:
        """(content, file_type) of a notebook or file."""
        fmt = str(fmt or "SOURCE").upper()
        if fmt not in EXPORT_FORMATS:
            raise InvalidParameterValue(f"Export format {fmt} is not supported locally; use SOURCE or JUPYTER.")
        path = normalize_path(path)
        row = self.store.get_object(path)
        if row is None:
            raise PathNotFound(path)
        if row["object_type"] == "DIRECTORY":
            raise InvalidParameterValue(f"Path ({path}) is a directory: exporting folders (DBC) is not supported.")
        content = bytes(row["content"] or b"")
        if row["object_type"] == "FILE":
            return content, posixpath.splitext(path)[1].lstrip(".")
        if fmt == "JUPYTER":
            name = posixpath.basename(path)
            return notebooks.source_to_ipynb(content.decode(), row["language"], name).encode(), "ipynb"
        return content, FILE_TYPES.get(row["language"], "py")

    def source(self, task: dict[str, Any]) -> tuple[str, str | None]:
        """The code a task runs: a workspace notebook, or a python file in the workspace or on disk."""
        if "notebook_task" in task:
            path = normalize_path(task["notebook_task"]["notebook_path"])
            row = self.store.get_object(path)
            if row is None or row["object_type"] != "NOTEBOOK":
                raise SourceNotFound(f"Unable to access the notebook {path}: it does not exist in the workspace.")
            return bytes(row["content"]).decode(), row["language"]
        python_file = task["spark_python_task"]["python_file"]
        if is_dbfs_file(python_file) and self.storage is not None:
            try:
                return self.storage.dbfs(python_file).local.read_text(), "PYTHON"
            except (OSError, UnicodeDecodeError, InvalidParameterValue):
                raise SourceNotFound(f"Python file {python_file} does not exist.") from None
        if is_local_file(python_file):
            local = Path(python_file)
            if local.is_file():
                return local.read_text(), "PYTHON"
            raise SourceNotFound(f"Python file {python_file} does not exist.")
        path = normalize_path(python_file)
        row = self.store.get_object(path)
        if row is None or row["object_type"] == "DIRECTORY":
            raise SourceNotFound(f"Python file {path} does not exist in the workspace.")
        return bytes(row["content"]).decode(), "PYTHON"

    # -- writes ---------------------------------------------------------------------------

    def import_(self, path: str, content: bytes, fmt: str | None, language: str | None, overwrite: bool) -> None:
        fmt = str(fmt or "SOURCE").upper()
        if fmt not in IMPORT_FORMATS:
            raise InvalidParameterValue(f"Import format {fmt} is not supported locally; use SOURCE, JUPYTER, "
                                        "AUTO or RAW.")
        if language is not None and language.upper() not in LANGUAGES:
            raise InvalidParameterValue(f"Unknown language {language}.")
        if len(content) > MAX_IMPORT_BYTES:
            raise InvalidParameterValue("Content exceeds the 10 MB import limit.")
        path = normalize_path(path)
        object_type, stored_path, lang, body = self._interpret(path, content, fmt, language)
        with self.store.transaction() as db:
            existing = db.execute("SELECT object_type FROM objects WHERE path = ?", (stored_path,)).fetchone()
            if existing is not None and (not overwrite or existing[0] == "DIRECTORY"):
                raise ResourceAlreadyExists(f"Path ({stored_path}) already exists.")
            self._make_parents(db, stored_path)
            self.store.put_object(db, stored_path, object_type, lang, body)

    def mkdirs(self, path: str) -> None:
        path = normalize_path(path)
        with self.store.transaction() as db:
            self._make_parents(db, path + "/x")

    def delete(self, path: str, recursive: bool) -> None:
        path = normalize_path(path)
        row = self.store.get_object(path)
        if row is None:
            raise PathNotFound(path)
        if row["object_type"] == "DIRECTORY" and not recursive and self.store.children(path):
            raise DirectoryNotEmpty(f"Folder ({path}) is not empty: set recursive to delete it.")
        self.store.delete_objects(path)

    # -- helpers --------------------------------------------------------------------------

    def _interpret(self, path: str, content: bytes, fmt: str, language: str | None
                   ) -> tuple[str, str, str | None, bytes]:
        """(object type, path to store at, language, stored bytes) of an import."""
        if fmt == "RAW":
            return "FILE", path, None, content
        try:
            text = content.decode()
        except UnicodeDecodeError:
            if fmt == "AUTO":
                return "FILE", path, None, content
            raise InvalidParameterValue(f"The content of {path} is not UTF-8 text, so it is not a notebook.") \
                from None
        if fmt == "JUPYTER" or (fmt == "AUTO" and path.lower().endswith(".ipynb")):
            try:
                source, lang = notebooks.ipynb_to_source(text, language)
            except ValueError:
                raise InvalidParameterValue(f"The content of {path} is not a valid Jupyter notebook.") from None
            return "NOTEBOOK", _strip_extension(path), lang, source.encode()
        if fmt == "AUTO":
            if not notebooks.is_databricks_source(text):
                return "FILE", path, None, content
            path = _strip_extension(path)
        lang = (language or notebooks.detect_language(text, path) or "").upper()
        if not lang:
            raise InvalidParameterValue(f"Set language to import {path} as a SOURCE notebook.")
        notebook = notebooks.parse(text, lang)
        return "NOTEBOOK", path, notebook.language, notebooks.to_source(notebook.cells, notebook.language).encode()

    def _make_parents(self, db: sqlite3.Connection, path: str) -> None:
        parent = posixpath.dirname(path)
        missing: list[str] = []
        while parent not in ("/", ""):
            row = db.execute("SELECT object_type FROM objects WHERE path = ?", (parent,)).fetchone()
            if row is not None:
                if row[0] != "DIRECTORY":
                    raise ResourceAlreadyExists(f"Path ({parent}) exists and is not a directory.")
                break
            missing.append(parent)
            parent = posixpath.dirname(parent)
        for folder in reversed(missing):
            self.store.put_object(db, folder, "DIRECTORY", None, None)


def _strip_extension(path: str) -> str:
    root, ext = posixpath.splitext(path)
    return root if ext.lower() in NOTEBOOK_EXTENSIONS else path


def _describe(row: sqlite3.Row) -> dict[str, Any]:
    info: dict[str, Any] = {
        "object_type": row["object_type"], "path": row["path"], "object_id": row["object_id"],
        "resource_id": str(row["object_id"]), "created_at": row["created_at"], "modified_at": row["modified_at"],
    }
    if row["language"]:
        info["language"] = row["language"]
    if row["object_type"] != "DIRECTORY":
        info["size"] = len(row["content"] or b"")
    return info


def decode_content(raw: Any) -> bytes:
    if raw is None:
        return b""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidParameterValue("content must be base64-encoded.") from None
