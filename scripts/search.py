#!/usr/bin/env python
"""Run one RLDF search from a single input image (see ``conf/run_search.yaml``)."""

from pipeline.cli.search import main

if __name__ == "__main__":
    main()
