"""Running work off the event loop: the runner interface, the local process pool, and the
Taskiq runner with its `facecast worker` side (the ``scale`` extra, imported lazily).
Imports core's base modules, packs and render (the tasks a job names), never storage.
"""
