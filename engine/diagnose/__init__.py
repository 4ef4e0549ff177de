"""Diagnostics: live training-health findings and the pre-flight data doctor."""
