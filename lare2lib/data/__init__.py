"""Images and what is stored about them: decoding, manifests, transforms, in-memory image sets,
ImageNet class names, the feature store, post-processing and DataLoader inputs.
"""
