"""Parts of the FungiCLEF-like data simulator; `sporeprint.simulate` puts them together.

>>> from sporeprint.simulate import SimConfig, simulate
>>> sim = simulate(SimConfig(scale="small", seed=0))
"""
