"""One module per verb: parse its options, call the libraries, print, return the exit code."""
