"""Evaluation: the one implementation of the detection metrics (AUC, AP, TPR@FPR, bootstrap
intervals) and the attacks that stress detectors (PGD, artifact removal).
"""
