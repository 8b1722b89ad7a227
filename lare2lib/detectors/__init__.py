"""Every detector kind behind one registry: EGRE and its ablations, reconstruction-trained
classifiers, AEROBLADE; their data, the one training loop, and prediction on any images.
"""
