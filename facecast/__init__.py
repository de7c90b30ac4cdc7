"""The ``facecast`` command: the composition root that wires settings, core and adapters."""
