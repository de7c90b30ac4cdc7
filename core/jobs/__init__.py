"""Running work off the event loop: the runner interface and the local
process pool. Imports only ``core``'s base modules.
"""
