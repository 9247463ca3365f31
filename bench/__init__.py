"""tulle's benchmark suite: side-by-side figures for every path (`python -m bench`).

Every figure is a ratio against a peer measured in the same run, the two
alternated (A B A B …) so drift of the machine hits both alike. Everything runs
inside the bench's own `tulle-b<pid>-*` namespaces or its own labs; nothing
touches the root netns. See docs/benchmarks.md for the last full report.
"""
