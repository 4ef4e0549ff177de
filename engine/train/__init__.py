"""The trainer process and its launcher (detach, resume, stop)."""
