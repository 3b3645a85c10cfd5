"""Render jobs: their rows, status and output, and requeueing what a dead server left."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .database import Database
from .records import DuplicateRender, TooManyRenders


class RenderJobTable(Database):
    """One row per render job; the worker changes status, progress and output."""

    def create_render(
        self,
        render_id: str,
        user_id: str,
        session_id: str,
        draft: dict[str, Any],
        quality: str,
        output_format: str = "mp4",
        max_unfinished: int | None = None,
    ) -> None:
        """A new pending render job; raises DuplicateRender if the id is taken and
        TooManyRenders if the user has ``max_unfinished`` pending or processing jobs already."""
        now = self.clock()
        row = (render_id, user_id, session_id, json.dumps(draft), quality, output_format, now, now)
        try:
            with self._transaction() as db:
                if max_unfinished is not None:
                    (unfinished,) = db.execute(
                        "SELECT COUNT(*) FROM renders WHERE user_id = ? "
                        "AND status IN ('pending', 'processing')",
                        (user_id,),
                    ).fetchone()
                    if unfinished >= max_unfinished:
                        raise TooManyRenders(max_unfinished)
                db.execute(
                    "INSERT INTO renders (id, user_id, session_id, status, progress, draft, "
                    "quality, format, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateRender(f"a render job with id {render_id} exists already") from exc

    def get_render(self, render_id: str) -> dict[str, Any] | None:
        """The render job row (draft decoded), or ``None``."""
        rows = self._query("SELECT * FROM renders WHERE id = ?", (render_id,))
        if not rows:
            return None
        return {**dict(rows[0]), "draft": json.loads(rows[0]["draft"])}

    def update_render(self, render_id: str, **fields: Any) -> None:
        """Change some columns of a render job (status, progress, output_rel, size, error)."""
        allowed = {"status", "progress", "output_rel", "size", "error"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"can only update {sorted(allowed)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        params = (*fields.values(), self.clock(), render_id)
        with self._transaction() as db:
            db.execute(f"UPDATE renders SET {assignments}, updated_at = ? WHERE id = ?", params)

    def requeue_unfinished_renders(self) -> list[str]:
        """Reset jobs a dead server left pending/processing; returns their ids, oldest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id FROM renders WHERE status IN ('pending', 'processing') "
                "ORDER BY created_at"
            ).fetchall()
            db.execute(
                "UPDATE renders SET status = 'pending', progress = 0 "
                "WHERE status IN ('pending', 'processing')"
            )
        return [row["id"] for row in rows]
