#!/usr/bin/python3
"""A stand-in for torch_peer.py in the GPU check's mechanics test: it fails as the peer does
without a GPU, in one line, so that the test needs neither PyTorch nor a GPU."""
import sys

print("no_peer: torch.cuda is not available (stand-in peer)", file=sys.stderr)
sys.exit(1)
