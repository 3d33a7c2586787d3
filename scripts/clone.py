#!/usr/bin/env python
"""Clone a dataset into resumable WebDataset shards (see ``conf/clone.yaml``)."""

from pipeline.cli.clone import main

if __name__ == "__main__":
    main()
