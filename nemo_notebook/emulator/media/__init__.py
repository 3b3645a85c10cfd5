"""What the emulator makes and serves as media: procedural images and clips (``scenes``),
music (``music``), rendered drafts (``render``), how an image was made (``provenance``), the
media folder and its signed URLs (``library``, ``files``) and the worker processes that run
media jobs off the server's interpreter (``jobs``, ``media_pool``, ``media_worker``).

Nothing here knows about HTTP, the store or the agent. Importing this package imports nothing
heavy: numpy and Pillow come with the modules that need them.
"""
