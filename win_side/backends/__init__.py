"""Render backends behind one small interface (see ``base``).

A backend knows nothing of git: it turns a spec into PNG bytes.
"""
