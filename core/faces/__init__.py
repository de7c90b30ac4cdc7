"""Faces: the face record, analyzers, landmarks, quality, enrolment into a
profile, tracking through video, skin. Imports ``core.media`` and nothing above it.
"""
