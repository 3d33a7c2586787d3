"""On PYTHONPATH, makes ``import ray`` fail in the process, as on a node where Ray is not installed."""
import sys

sys.modules["ray"] = None
