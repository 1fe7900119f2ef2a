"""Category lists: readers for the list formats and the shared memory-mapped index."""
