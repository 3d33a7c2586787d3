#!/usr/bin/env python
"""Score a synthetic image set against a real one (see ``conf/metrics.yaml``)."""

from pipeline.cli.metrics import main

if __name__ == "__main__":
    main()
