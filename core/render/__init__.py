"""Rendering: clips, memes, effects, captions and their fonts, and the
picklable tasks a render worker runs. Imports packs, engines, faces and media; never
service, jobs or storage, so a worker imports only what renders.
"""
