"""The emulator's HTTP face: handlers for every endpoint of PROTOCOL.md §2 and ``/_emulator/``.

Each group of handlers receives the server's :class:`~..services.EmulatorServices`:
``accounts`` (tokens, credits, sessions), ``session_state``, ``chat`` (``/run_sse``, with
``turn_runner``, ``sse_stream`` and ``adk_events``), ``uploads`` (with ``upload_receiving``,
``upload_checks`` and ``upload_quota``), ``render_jobs``, ``documents`` (media files, OpenAPI)
and ``admin``. ``envelope`` has the JSON envelope and error answers, ``handlers`` the
authentication every group shares and ``observe`` the request-log middleware.
"""
