"""Load benchmark of the notification service, driven only through its wire contract.

`python -m bench` starts the server itself (one or two `python wsgi.py` processes on a
fresh database), runs the scenarios S1-S6 with asyncio Socket.IO clients spread over
several load processes, and writes a table to stdout plus JSON and a latency plot
under `bench/results/`. See `bench/README.md`.
"""
