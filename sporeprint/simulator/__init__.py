"""Parts of the FungiCLEF-like data simulator; `sporeprint.simulator.simulate` puts them together.

>>> from sporeprint.simulator.simulate import SimConfig, simulate
>>> sim = simulate(SimConfig(scale="small", seed=0))
"""
