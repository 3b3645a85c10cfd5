"""Uploaded files of sessions, and the disk space each user's files take."""

from __future__ import annotations

from typing import Any

from .database import Database


class UploadTable(Database):
    """One row per stored upload."""

    def add_upload(self, record: dict[str, Any]) -> None:
        """Remember one stored upload (keys: the columns of the uploads table)."""
        columns = ("id", "session_id", "user_id", "filename", "file_type", "rel_path", "size",
                   "width", "height", "duration", "fps", "hash")  # fmt: skip
        values = (*(record.get(c) for c in columns), self.clock())
        with self._transaction() as db:
            db.execute(f"INSERT INTO uploads VALUES ({', '.join('?' * len(values))})", values)

    def storage_used(self, user_id: str) -> int:
        """Bytes a user keeps on disk: stored uploads plus finished render outputs."""
        rows = self._query(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM uploads WHERE user_id = ?) + "
            "(SELECT COALESCE(SUM(size), 0) FROM renders WHERE user_id = ? "
            "AND output_rel IS NOT NULL) AS used",
            (user_id, user_id),
        )
        return int(rows[0]["used"])

    def list_uploads(self, session_id: str) -> list[dict[str, Any]]:
        """The uploads of a session, oldest first."""
        rows = self._query(
            "SELECT * FROM uploads WHERE session_id = ? ORDER BY created_at, rowid", (session_id,)
        )
        return [dict(r) for r in rows]
