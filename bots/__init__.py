"""Chat adapters, one module per platform (``web``, ``telegram_bot``, ``discord_bot``) on the
shared ``base``. Each imports ``core`` and ``bots.base`` only, never another adapter, and
stays thin: the conversation itself lives in :mod:`core.service.conversation`."""
