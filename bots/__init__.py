"""Chat adapters, one module per platform. Each imports only ``core``'s public API and never
another adapter. The web chat, Telegram and Discord adapters land here (see DESIGN.md §4)."""
