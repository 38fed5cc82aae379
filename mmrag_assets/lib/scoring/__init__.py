"""Scoring kernels shared by the index build and the search: pure functions of arrays, no stores."""
