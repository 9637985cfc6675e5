#!/usr/bin/env python3
"""The local ECS endpoint: moto's server on a loopback port.

moto diverges from ECS in places (../shared/ECS-NOTES.md). Where a divergence blocks
testing real behaviour, a small patch goes in moto_patches.py, each citing the ECS API
behaviour it restores; this entry point applies them before serving.
"""
import argparse

from moto.server import main as moto_main

import moto_patches


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    moto_patches.apply()
    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main()
