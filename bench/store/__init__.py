"""The results store: run directories, step records, the shared step-0 cache, atomic writes.

This package is the one owner of the store's layout, in both directions: it writes run
directories and reads them back (`RunStore.runs()`); nothing else parses run paths.
"""
