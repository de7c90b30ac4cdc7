"""FaceCast's core: the face work and the product logic. It imports no chat library.

Subpackages, lowest first (each may import only those before it; see
``tests/test_layout.py``): ``media`` (pictures and video in and out), ``faces`` (finding,
measuring and enrolling faces), ``engines`` (swap engines and their models), ``packs``
(clip and meme packs as data), ``render`` (clips, memes, captions, the worker's tasks),
``jobs`` and ``storage``, then ``service`` (the conversation). ``config``, ``errors``,
``metrics`` and ``progress`` sit beside them and import none of them.
"""
