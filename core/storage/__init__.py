"""What FaceCast remembers: the database store and encryption at rest.
Imports faces (the profile it stores).
"""
