"""Test-agnostic long-tailed recognition (notebooks 01-04).

data: long-tailed sets and the test distributions; models: backbones, experts, the preference
hypernetwork; train: methods, losses and the loop; evaluate: every test distribution and
test-time adaptation; accuracy: top-1, per-class and shot-group accuracy (shared by train and
evaluate). Method and sources: docs/long_tail.md.
"""
