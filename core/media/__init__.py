"""Media in and out: safe image intake, video decode, MP4/GIF encoders, the AI label
overlay. Imports only ``config`` and ``errors``."""
