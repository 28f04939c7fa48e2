"""Tools for studying the engine: gradient checks, graph pictures, the profiler and anomaly mode.

They watch the engine through `tinygrad_lite.observe` (the one hook interface the engine calls) and
read graphs through `backprop.toposort`; the engine imports nothing from here.
"""
