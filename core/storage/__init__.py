"""What FaceCast remembers: the database store, encryption at rest, and the blob store
that carries outputs and packs between machines. Imports faces (the profile it stores).
"""
