"""Real-server tests: `python wsgi.py` as a subprocess, real Socket.IO and HTTP clients, nginx, Chromium."""
