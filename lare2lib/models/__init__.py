"""Model loaders by role (LDM components, autoencoders, schedulers, backbones), class-prompt
conditioning, TAEF2, opt-in unsafe loading, and tiny random-weight models for tests.
"""
