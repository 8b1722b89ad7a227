"""One module per notebook, named after it (``nb01_lare`` serves ``01_lare``): each owns its
config, smoke budget, computation and the ``metrics.json`` it writes. Method modules never import
these.
"""
