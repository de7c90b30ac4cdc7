"""Clip packs as data: manifests, the pack library (clips and meme templates), building a
pack (``clips add``) and the camera moves that turn a still into a clip. Imports faces and
media."""
